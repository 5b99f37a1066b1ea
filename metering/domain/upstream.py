"""Parse an upstream provider's usage or cost export into normalized rows.

Operators reconcile metering's records against the provider's bill. This module
is the pure part: bytes in, :class:`UpstreamExport` out, every problem an
:class:`~metering.domain.errors.InvalidArgument` on the field ``export_data``
naming the line, page, bucket or result at fault. The formats, the fields read
and where each was verified are in ``docs/upstream-formats.md``.

Everything here comes from outside, so everything is bounded (size, rows, name
lengths, counts, amounts) and money is never a float: JSON is parsed with
``parse_float=Decimal``, amounts are summed exactly and each merged row's cost
is rounded once, half away from zero, to integer nanos.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from metering.domain.errors import InvalidArgument, Violations
from metering.domain.money import NANOS_PER_UNIT, is_currency_code, round_half_up_div
from metering.domain.usage import TokenUsage

FIELD = "export_data"

# Bounds on what an export may contain. A month of daily buckets grouped by key
# and model is thousands of rows; these only stop garbage and memory blow-ups.
EXPORT_BYTES_MAX = 64 * 1024 * 1024
EXPORT_ROWS_MAX = 1_000_000
NAME_CHARS_MAX = 128
TOKENS_PER_ROW_MAX = 10**12
REQUESTS_PER_ROW_MAX = 10**12
COST_UNITS_MAX = 10**12
# A decimal with more digits than this is not an amount anyone billed.
_AMOUNT_DIGITS_MAX = 50
# Scale (decimal places) beyond which an amount is refused: at 40 places it is
# already 31 orders of magnitude below a nano, and the bound keeps the exact
# sums cheap.
_AMOUNT_SCALE_MAX = 40
# Stop collecting after this many problems: one bad column in a million-row
# file must not produce a million-entry error.
_VIOLATIONS_MAX = 20

# The latest instant a day string can express (9999-12-31T23:59:59Z).
_UNIX_SECONDS_MAX = 253_402_300_799

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_INTEGER = re.compile(r"[0-9]+")
# Plain decimal notation only: Decimal() alone would also take "1_000", "NaN"
# and non-ASCII digits, none of which belongs in a CSV of amounts.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMERIC_CELL_CHARS_MAX = 64


class UpstreamFormat(enum.Enum):
    """The export formats understood (mirrors ``UpstreamFormat`` in admin_service.proto)."""

    OPENAI_USAGE = "OPENAI_USAGE"  # OpenAI Usage API /v1/organization/usage/completions JSON pages
    OPENAI_COSTS = "OPENAI_COSTS"  # OpenAI Costs API /v1/organization/costs JSON pages
    ANTHROPIC_USAGE = "ANTHROPIC_USAGE"  # Anthropic /v1/organizations/usage_report/messages JSON
    ANTHROPIC_COST = "ANTHROPIC_COST"  # Anthropic Admin API /v1/organizations/cost_report JSON
    GENERIC_CSV = "GENERIC_CSV"  # documented CSV (docs/upstream-formats.md)


@dataclass(frozen=True)
class UpstreamRow:
    """One normalized row: a day x model x key (x request), usage and cost summed."""

    day: str  # "YYYY-MM-DD", the UTC day of the bucket/row
    model: str  # as the provider names it; "" when the row has none
    key: str  # api key id, or project/workspace id when that's all there is; "" when none
    request_id: str  # "" unless the row is one request
    usage: TokenUsage  # normalized to metering's nesting; zeros for cost-only rows
    request_count: int | None  # None when the export does not say
    cost_nanos: int | None  # exact integer nanos of currency_code; None when no cost
    currency_code: str | None  # upper-case ISO code, e.g. "USD"; None with cost_nanos None


@dataclass(frozen=True)
class UpstreamExport:
    """A parsed export: its format, provider and merged, sorted rows."""

    format: UpstreamFormat
    provider: str  # "openai", "anthropic", or the CSV's provider column / "" when absent
    rows: list[UpstreamRow]  # merged per (day, model, key, request_id), sorted by that


# --- errors -------------------------------------------------------------------------


class _RowError(Exception):
    """One row's problem; the caller prefixes where it is and collects it."""


class _Problems:
    """Violations on ``export_data``, raised early once there are too many to read."""

    def __init__(self) -> None:
        self.violations = Violations()

    def add(self, where: str, description: str) -> None:
        self.violations.add(FIELD, f"{where}: {description}")
        if len(self.violations.items) >= _VIOLATIONS_MAX:
            self.violations.add(FIELD, f"stopped after {_VIOLATIONS_MAX} problems")
            self.violations.raise_if_any()

    def raise_if_any(self) -> None:
        self.violations.raise_if_any()


def _fail(description: str) -> InvalidArgument:
    violations = Violations()
    violations.add(FIELD, description)
    return InvalidArgument(violations.items)


# --- exact amounts ------------------------------------------------------------------


@dataclass(frozen=True)
class _Amount:
    """An exact decimal amount of currency units: ``scaled / 10**scale``."""

    scaled: int
    scale: int

    def __add__(self, other: _Amount) -> _Amount:
        scale = max(self.scale, other.scale)
        return _Amount(
            self.scaled * 10 ** (scale - self.scale) + other.scaled * 10 ** (scale - other.scale),
            scale,
        )

    def nanos(self) -> int:
        # The one rounding of a row's cost, after the exact sum: rounding each
        # part first would let the rounded parts drift from the rounded total.
        if self.scale <= 9:
            return self.scaled * int(10 ** (9 - self.scale))  # exact: no rounding needed
        return round_half_up_div(self.scaled * NANOS_PER_UNIT, 10**self.scale)


def _amount(value: Decimal, minor_unit_places: int = 0) -> _Amount:
    """An exact amount from a decimal of units, or of ``10**-minor_unit_places`` units."""
    if not value.is_finite():
        raise _RowError(f"amount {value} is not a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite decimals have an integer exponent
    if len(digits) > _AMOUNT_DIGITS_MAX:
        raise _RowError(f"amount has more than {_AMOUNT_DIGITS_MAX} digits")
    if value.is_zero():
        return _Amount(0, 0)
    # Compare as decimals before building integers: "1e999999999" must not
    # turn into a billion-digit integer.
    if value.copy_abs() > COST_UNITS_MAX * 10**minor_unit_places:
        raise _RowError(f"amount {value} is beyond ±{COST_UNITS_MAX} currency units")
    coefficient = int("".join(map(str, digits)))
    if sign:
        coefficient = -coefficient
    scale = minor_unit_places - exponent
    if scale > _AMOUNT_SCALE_MAX:
        raise _RowError(f"amount {value} has more than {_AMOUNT_SCALE_MAX} decimal places")
    if scale < 0:
        return _Amount(coefficient * 10**-scale, 0)
    return _Amount(coefficient, scale)


# --- field readers ------------------------------------------------------------------


def _name(value: object, what: str) -> str:
    """An optional name (model, key, id): a bounded printable string, "" for null."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _RowError(f"{what} must be a string, got {_type_name(value)}")
    if len(value) > NAME_CHARS_MAX or not value.isprintable():
        raise _RowError(f"{what} must be at most {NAME_CHARS_MAX} printable characters")
    return value


def _first_name(result: dict[str, Any], *fields: str) -> str:
    """The first non-empty of some name fields, every one of them checked."""
    names = [_name(result.get(name), name) for name in fields]
    return next((name for name in names if name), "")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _count(value: object, what: str, maximum: int = TOKENS_PER_ROW_MAX) -> int:
    """A JSON count: an integer in 0..maximum; null or absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _RowError(f"{what} must be a number, got {_type_name(value)}")
    if isinstance(value, Decimal):
        # 1e3 is an integer written oddly; 1.5 is not a count.
        if not value.is_finite() or value != value.to_integral_value():
            raise _RowError(f"{what} must be a whole number, got {value}")
        if value.copy_abs() > maximum:
            raise _RowError(f"{what} must be at most {maximum}, got {value}")
        value = int(value)
    if value < 0:
        raise _RowError(f"{what} must not be negative, got {value}")
    if value > maximum:
        raise _RowError(f"{what} must be at most {maximum}, got {value}")
    return value


def _day_of_unix_seconds(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RowError(f"{what} must be an integer of unix seconds, got {_type_name(value)}")
    if not 0 <= value <= _UNIX_SECONDS_MAX:
        raise _RowError(f"{what} {value} is not a plausible unix time")
    return datetime.fromtimestamp(value, tz=UTC).date().isoformat()


def _day_of_rfc3339(text: str, what: str) -> str:
    """The UTC day of an RFC 3339 timestamp (an offset is required)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _RowError(f"{what} {text[:40]!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    if match.group(8):
        offset = timedelta(0)
    else:
        off_hours, off_minutes = int(match.group(10)), int(match.group(11))
        if off_hours > 23 or off_minutes > 59:
            raise _RowError(f"{what} {text!r} has an impossible offset")
        offset = timedelta(hours=off_hours, minutes=off_minutes)
        if match.group(9) == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        utc_day = moment.astimezone(UTC).date()
    except (ValueError, OverflowError) as exc:
        raise _RowError(f"{what} {text!r} is not a valid time ({exc})") from None
    return utc_day.isoformat()


def _day_of_timestamp_field(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{what} must be an RFC 3339 string, got {_type_name(value)}")
    return _day_of_rfc3339(value, what)


def _currency(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{what} must be a currency code string, got {_type_name(value)}")
    code = value.strip().upper()
    if not is_currency_code(code):
        raise _RowError(f"{what} {value[:20]!r} is not an ISO 4217 currency code")
    return code


def _json_amount(value: object, what: str, minor_unit_places: int = 0) -> _Amount:
    """A JSON amount: a number (parsed as Decimal) or a decimal string."""
    if isinstance(value, bool):
        raise _RowError(f"{what} must be a number, got boolean")
    if isinstance(value, int):
        value = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _NUMERIC_CELL_CHARS_MAX or not _DECIMAL.fullmatch(text):
            raise _RowError(f"{what} {value[:40]!r} is not a decimal number")
        value = Decimal(text)
    if not isinstance(value, Decimal):
        raise _RowError(f"{what} must be a number, got {_type_name(value)}")
    return _amount(value, minor_unit_places)


# --- the parsed-but-unmerged row ----------------------------------------------------


@dataclass
class _Row:
    where: str
    day: str
    model: str
    key: str
    request_id: str
    usage: TokenUsage
    request_count: int | None
    cost: _Amount | None
    currency_code: str | None


def _check_usage(usage: TokenUsage) -> TokenUsage:
    """Per-row bounds and metering's nesting on a normalized usage."""
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
    ):
        if getattr(usage, name) > TOKENS_PER_ROW_MAX:
            raise _RowError(f"{name} must be at most {TOKENS_PER_ROW_MAX} per row")
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise _RowError(
            "cached tokens exceed input_tokens (input_tokens is the whole prompt, "
            "cached parts included)"
        )
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise _RowError("cache_write_1h_tokens exceed cache_write_tokens")
    if usage.reasoning_tokens > usage.output_tokens:
        raise _RowError("reasoning_tokens exceed output_tokens")
    return usage


# --- JSON pages ---------------------------------------------------------------------


def _reject_constant(name: str) -> object:
    # json accepts NaN and Infinity by default; no amount or count is either.
    raise ValueError(f"{name} is not a number")


def _decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"export is not UTF-8 text (bad byte at offset {exc.start})") from None
    return text.removeprefix("\ufeff")


@dataclass(frozen=True)
class _Page:
    where: str  # "page 2 (line 7)"
    data: list[Any]


def _json_values(text: str) -> Iterator[tuple[int, object]]:
    """Each top-level JSON value with its line: one document, JSON lines, or concatenated."""
    decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
    position, line, counted_to = 0, 1, 0
    while True:
        blank = _JSON_WHITESPACE.match(text, position)
        position = blank.end() if blank else position
        if position >= len(text):
            return
        line += text.count("\n", counted_to, position)
        counted_to = position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _fail(
                f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
            ) from None
        except RecursionError:
            raise _fail(f"line {line}: JSON nested too deeply") from None
        except ValueError as exc:
            # NaN/Infinity, or an integer too long for int() (Python's digit limit).
            raise _fail(f"line {line}: not valid JSON ({exc})") from None
        yield line, value


def _pages(text: str) -> list[_Page]:
    """The pages of an export: a page object, an array of pages, or pages one after another."""
    pages: list[_Page] = []
    for line, value in _json_values(text):
        items = value if isinstance(value, list) else [value]
        for item in items:
            where = f"page {len(pages) + 1} (line {line})"
            if not isinstance(item, dict):
                raise _fail(f"{where}: expected a page object, got {_type_name(item)}")
            data = item.get("data")
            if not isinstance(data, list):
                raise _fail(f"{where}: a page needs a 'data' array of buckets")
            pages.append(_Page(where, data))
    if not pages:
        raise _fail("export is empty")
    return pages


def _results(pages: list[_Page]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every (where, bucket, result) of the pages; malformed buckets are errors."""
    for page in pages:
        for bucket_number, bucket in enumerate(page.data, start=1):
            where = f"{page.where}, bucket {bucket_number}"
            if not isinstance(bucket, dict):
                raise _fail(f"{where}: expected a bucket object, got {_type_name(bucket)}")
            results = bucket.get("results")
            if not isinstance(results, list):
                raise _fail(f"{where}: a bucket needs a 'results' array")
            for result_number, result in enumerate(results, start=1):
                result_where = f"{where}, result {result_number}"
                if not isinstance(result, dict):
                    raise _fail(f"{result_where}: expected an object, got {_type_name(result)}")
                yield result_where, bucket, result


_OPENAI_USAGE_OBJECT = "organization.usage.completions.result"
_OPENAI_COSTS_OBJECT = "organization.costs.result"


def _detect_json(pages: list[_Page]) -> UpstreamFormat:
    for page in pages:
        for bucket in page.data:
            if not isinstance(bucket, dict):
                raise _fail(f"{page.where}: expected bucket objects in 'data'")
            results = bucket.get("results")
            if not isinstance(results, list):
                raise _fail(f"{page.where}: a bucket needs a 'results' array")
            for result in results:
                if not isinstance(result, dict):
                    continue
                if "start_time" in bucket:
                    if result.get("object") == _OPENAI_COSTS_OBJECT or "amount" in result:
                        return UpstreamFormat.OPENAI_COSTS
                    if result.get("object") == _OPENAI_USAGE_OBJECT or "input_tokens" in result:
                        return UpstreamFormat.OPENAI_USAGE
                elif "starting_at" in bucket:
                    if "amount" in result:
                        return UpstreamFormat.ANTHROPIC_COST
                    if "uncached_input_tokens" in result or "output_tokens" in result:
                        return UpstreamFormat.ANTHROPIC_USAGE
                raise _fail(
                    f"{page.where}: unrecognised JSON export (expected OpenAI usage/costs "
                    "pages or an Anthropic usage/cost report)"
                )
    raise _fail("cannot tell the export's format: it has no results (name the format)")


def _openai_usage_row(where: str, bucket: dict[str, Any], result: dict[str, Any]) -> _Row:
    kind = result.get("object")
    if kind is not None and kind != _OPENAI_USAGE_OBJECT:
        raise _RowError(f"object {str(kind)[:80]!r} is not a completions usage result")
    if "amount" in result:
        raise _RowError("has an 'amount': this looks like a costs export")
    input_tokens = _count(result.get("input_tokens"), "input_tokens")
    cached = _count(result.get("input_cached_tokens"), "input_cached_tokens")
    # Newer Usage API versions also report prompt-cache writes, part of
    # input_tokens like the cached reads; a 12-hour write is not metering's
    # one-hour write, so it counts as a cache write of no particular lifetime.
    cache_write = _count(result.get("input_cache_write_tokens"), "input_cache_write_tokens")
    cache_write_12h = _count(
        result.get("input_cache_write_12h_tokens"), "input_cache_write_12h_tokens"
    )
    requests = result.get("num_model_requests")
    key = _first_name(result, "api_key_id", "project_id")
    return _Row(
        where=where,
        day=_day_of_unix_seconds(bucket.get("start_time"), "bucket start_time"),
        model=_name(result.get("model"), "model"),
        key=key,
        request_id="",
        usage=_check_usage(
            TokenUsage(
                input_tokens=input_tokens,
                output_tokens=_count(result.get("output_tokens"), "output_tokens"),
                cache_read_tokens=cached,
                cache_write_tokens=cache_write + cache_write_12h,
            )
        ),
        request_count=(
            None
            if requests is None
            else _count(requests, "num_model_requests", REQUESTS_PER_ROW_MAX)
        ),
        cost=None,
        currency_code=None,
    )


def _openai_cost_row(where: str, bucket: dict[str, Any], result: dict[str, Any]) -> _Row:
    kind = result.get("object")
    if kind is not None and kind != _OPENAI_COSTS_OBJECT:
        raise _RowError(f"object {str(kind)[:80]!r} is not a costs result")
    amount = result.get("amount")
    cost: _Amount | None = None
    currency: str | None = None
    if amount is not None:
        if not isinstance(amount, dict):
            raise _RowError(f"amount must be an object, got {_type_name(amount)}")
        cost = _json_amount(amount.get("value"), "amount.value")
        currency = _currency(amount.get("currency"), "amount.currency")
    # line_item reads "gpt-4o-mini-2024-07-18, input": the model, then what of it
    # was billed. A line item that names no model is kept whole as its label.
    line_item = _name(result.get("line_item"), "line_item")
    model = line_item.split(", ", 1)[0]
    key = _first_name(result, "api_key_id", "project_id")
    return _Row(
        where=where,
        day=_day_of_unix_seconds(bucket.get("start_time"), "bucket start_time"),
        model=model,
        key=key,
        request_id="",
        usage=TokenUsage(),
        request_count=None,
        cost=cost,
        currency_code=currency,
    )


def _anthropic_usage_row(where: str, bucket: dict[str, Any], result: dict[str, Any]) -> _Row:
    if "amount" in result:
        raise _RowError("has an 'amount': this looks like a cost report")
    uncached = _count(result.get("uncached_input_tokens"), "uncached_input_tokens")
    cache_read = _count(result.get("cache_read_input_tokens"), "cache_read_input_tokens")
    creation = result.get("cache_creation")
    if creation is None:
        creation = {}
    if not isinstance(creation, dict):
        raise _RowError(f"cache_creation must be an object, got {_type_name(creation)}")
    write_5m = _count(
        creation.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens"
    )
    write_1h = _count(
        creation.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens"
    )
    key = _first_name(result, "api_key_id", "workspace_id")
    return _Row(
        where=where,
        day=_day_of_timestamp_field(bucket.get("starting_at"), "bucket starting_at"),
        model=_name(result.get("model"), "model"),
        key=key,
        request_id="",
        # Anthropic splits the prompt into disjoint parts; metering's
        # input_tokens is the whole prompt with the cached parts inside it.
        usage=_check_usage(
            TokenUsage(
                input_tokens=uncached + cache_read + write_5m + write_1h,
                output_tokens=_count(result.get("output_tokens"), "output_tokens"),
                cache_read_tokens=cache_read,
                cache_write_tokens=write_5m + write_1h,
                cache_write_1h_tokens=write_1h,
            )
        ),
        request_count=None,  # the usage report counts tokens, not requests
        cost=None,
        currency_code=None,
    )


def _anthropic_cost_row(where: str, bucket: dict[str, Any], result: dict[str, Any]) -> _Row:
    if "amount" not in result:
        raise _RowError("a cost report result needs an 'amount'")
    # The amount is a decimal string in the currency's lowest unit (cents):
    # "123.45" USD is 123.45 cents, $1.2345. Cents are two places below the
    # unit; the report's currency is documented as always USD.
    cost = _json_amount(result.get("amount"), "amount", minor_unit_places=2)
    currency = _currency(result.get("currency"), "currency")
    return _Row(
        where=where,
        day=_day_of_timestamp_field(bucket.get("starting_at"), "bucket starting_at"),
        model=_name(result.get("model"), "model"),
        key=_name(result.get("workspace_id"), "workspace_id"),
        request_id="",
        usage=TokenUsage(),
        request_count=None,
        cost=cost,
        currency_code=currency,
    )


_JSON_ROW_READERS: dict[UpstreamFormat, Callable[[str, dict[str, Any], dict[str, Any]], _Row]] = {
    UpstreamFormat.OPENAI_USAGE: _openai_usage_row,
    UpstreamFormat.OPENAI_COSTS: _openai_cost_row,
    UpstreamFormat.ANTHROPIC_USAGE: _anthropic_usage_row,
    UpstreamFormat.ANTHROPIC_COST: _anthropic_cost_row,
}


def _json_rows(pages: list[_Page], fmt: UpstreamFormat, problems: _Problems) -> list[_Row]:
    reader = _JSON_ROW_READERS[fmt]
    rows: list[_Row] = []
    for count, (where, bucket, result) in enumerate(_results(pages), start=1):
        if count > EXPORT_ROWS_MAX:
            raise _fail(f"{where}: more than {EXPORT_ROWS_MAX} rows")
        try:
            rows.append(reader(where, bucket, result))
        except _RowError as exc:
            problems.add(where, str(exc))
    return rows


# --- the generic CSV ----------------------------------------------------------------

_CSV_COLUMNS = frozenset(
    {
        "date",
        "model",
        "api_key",
        "project",
        "request_id",
        "provider",
        "requests",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
        "cost",
        "currency",
    }
)
_CSV_REQUIRED = ("date", "model", "input_tokens", "output_tokens")
_CSV_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_DEFAULT_CURRENCY = "USD"


def _csv_header(row: list[str]) -> list[str]:
    return [cell.strip().lower() for cell in row]


def _looks_like_csv(text: str) -> bool:
    first_line = text.split("\n", 1)[0][:4096]
    try:
        header = next(csv.reader([first_line]), [])
    except csv.Error:
        return False
    names = set(_csv_header(header))
    return "date" in names and "input_tokens" in names


def _csv_int(cell: str, column: str, maximum: int) -> int:
    text = cell.strip()
    if len(text) > _NUMERIC_CELL_CHARS_MAX or not _INTEGER.fullmatch(text):
        if text.startswith("-") and _INTEGER.fullmatch(text[1:]):
            raise _RowError(f"{column} must not be negative, got {text}")
        raise _RowError(f"{column} {text[:40]!r} is not a whole number")
    value = int(text)
    if value > maximum:
        raise _RowError(f"{column} must be at most {maximum}, got {value}")
    return value


@functools.lru_cache(maxsize=4096)
def _csv_day(cell: str) -> str:
    text = cell.strip()
    match = _DATE.fullmatch(text)
    if match is not None:
        try:
            return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
        except ValueError as exc:
            raise _RowError(f"date {text!r} is not a valid date ({exc})") from None
    if _RFC3339.fullmatch(text):
        return _day_of_rfc3339(text, "date")
    raise _RowError(f"date {text[:40]!r} is neither YYYY-MM-DD nor an RFC 3339 timestamp")


def _csv_rows(text: str, problems: _Problems) -> tuple[list[_Row], str]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _fail(f"line 1: not valid CSV ({exc})") from None
    if header is None:
        raise _fail("export is empty")
    names = _csv_header(header)
    seen: set[str] = set()
    for name in names:
        if name in seen and name in _CSV_COLUMNS:
            raise _fail(f"line 1: column {name!r} appears twice")
        seen.add(name)
    missing = [name for name in _CSV_REQUIRED if name not in seen]
    if "api_key" not in seen and "project" not in seen:
        missing.append("api_key (or project)")
    if missing:
        raise _fail(f"line 1: the header lacks the column(s) {', '.join(missing)}")
    index = {name: i for i, name in enumerate(names) if name in _CSV_COLUMNS}

    rows: list[_Row] = []
    # One export is one provider's bill: the first provider named, and its line.
    first_provider: tuple[str, int] | None = None
    previous_line = reader.line_num
    count = 0
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            raise _fail(f"line {reader.line_num}: not valid CSV ({exc})") from None
        if cells is None:
            break
        line = previous_line + 1
        previous_line = reader.line_num
        if not cells:
            continue  # a blank line
        count += 1
        if count > EXPORT_ROWS_MAX:
            raise _fail(f"line {line}: more than {EXPORT_ROWS_MAX} rows")
        where = f"line {line}"
        if len(cells) != len(names):
            problems.add(where, f"has {len(cells)} cells, the header has {len(names)}")
            continue
        try:
            row, provider = _csv_row(where, cells, index)
        except _RowError as exc:
            problems.add(where, str(exc))
            continue
        if provider:
            if first_provider is None:
                first_provider = (provider, line)
            elif provider != first_provider[0]:
                problems.add(
                    where,
                    f"provider {provider!r} differs from {first_provider[0]!r} "
                    f"at line {first_provider[1]}",
                )
                continue
        rows.append(row)
    return rows, "" if first_provider is None else first_provider[0]


def _csv_row(where: str, cells: list[str], index: dict[str, int]) -> tuple[_Row, str]:
    values = {column: cells[position].strip() for column, position in index.items()}
    get = values.get
    for column in ("date", "input_tokens", "output_tokens"):
        if not get(column):
            raise _RowError(
                f"{column} is blank" + (" (write 0 for none)" if column != "date" else "")
            )
    counts = {}
    for column in _CSV_TOKEN_COLUMNS:
        text = get(column)
        counts[column] = _csv_int(text, column, TOKENS_PER_ROW_MAX) if text else 0
    requests_text = get("requests")
    cost_text = get("cost")
    cost: _Amount | None = None
    currency: str | None = None
    if cost_text:
        if len(cost_text) > _NUMERIC_CELL_CHARS_MAX or not _DECIMAL.fullmatch(cost_text):
            raise _RowError(f"cost {cost_text[:40]!r} is not a decimal number")
        cost = _amount(Decimal(cost_text))
        currency = _currency(get("currency") or _DEFAULT_CURRENCY, "currency")
    row = _Row(
        where=where,
        day=_csv_day(values["date"]),
        model=_name(get("model", ""), "model"),
        key=_first_name(values, "api_key", "project"),
        request_id=_name(get("request_id", ""), "request_id"),
        usage=_check_usage(TokenUsage(**counts)),
        request_count=(
            _csv_int(requests_text, "requests", REQUESTS_PER_ROW_MAX) if requests_text else None
        ),
        cost=cost,
        currency_code=currency,
    )
    return row, _name(get("provider", ""), "provider").lower()


# --- merging ------------------------------------------------------------------------


@dataclass
class _Cell:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    request_count: int | None = None
    cost: _Amount | None = None
    currency_code: str | None = None


def _merge(rows: list[_Row], problems: _Problems) -> list[UpstreamRow]:
    cells: dict[tuple[str, str, str, str], _Cell] = {}
    # One (day, model, key) is billed in one currency; a second one is a
    # mixed export that no comparison with local records can make sense of.
    currencies: dict[tuple[str, str, str], tuple[str, str]] = {}
    for row in rows:
        if row.currency_code is not None:
            slot = (row.day, row.model, row.key)
            first = currencies.setdefault(slot, (row.currency_code, row.where))
            if first[0] != row.currency_code:
                problems.add(
                    row.where,
                    f"currency {row.currency_code} differs from {first[0]} at {first[1]} "
                    f"for the same day, model and key",
                )
                continue
        cell = cells.setdefault((row.day, row.model, row.key, row.request_id), _Cell())
        usage = row.usage
        cell.input_tokens += usage.input_tokens
        cell.output_tokens += usage.output_tokens
        cell.cache_read_tokens += usage.cache_read_tokens
        cell.cache_write_tokens += usage.cache_write_tokens
        cell.cache_write_1h_tokens += usage.cache_write_1h_tokens
        cell.reasoning_tokens += usage.reasoning_tokens
        if row.request_count is not None:
            cell.request_count = (cell.request_count or 0) + row.request_count
        if row.cost is not None:
            cell.cost = row.cost if cell.cost is None else cell.cost + row.cost
            cell.currency_code = row.currency_code
    problems.raise_if_any()
    return [
        UpstreamRow(
            day=day,
            model=model,
            key=key,
            request_id=request_id,
            usage=TokenUsage(
                input_tokens=cell.input_tokens,
                output_tokens=cell.output_tokens,
                cache_read_tokens=cell.cache_read_tokens,
                cache_write_tokens=cell.cache_write_tokens,
                cache_write_1h_tokens=cell.cache_write_1h_tokens,
                reasoning_tokens=cell.reasoning_tokens,
            ),
            request_count=cell.request_count,
            cost_nanos=None if cell.cost is None else cell.cost.nanos(),
            currency_code=cell.currency_code,
        )
        for (day, model, key, request_id), cell in sorted(cells.items())
    ]


# --- entry points -------------------------------------------------------------------

_PROVIDERS = {
    UpstreamFormat.OPENAI_USAGE: "openai",
    UpstreamFormat.OPENAI_COSTS: "openai",
    UpstreamFormat.ANTHROPIC_USAGE: "anthropic",
    UpstreamFormat.ANTHROPIC_COST: "anthropic",
}


def _text_of(data: bytes) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("export data must be bytes")
    if len(data) > EXPORT_BYTES_MAX:
        raise _fail(f"export is {len(data)} bytes, more than the {EXPORT_BYTES_MAX} allowed")
    text = _decode_text(bytes(data))
    if not text.strip():
        raise _fail("export is empty")
    return text


def _is_json(text: str) -> bool:
    return text.lstrip(" \t\r\n")[:1] in ("{", "[")


def _detect(text: str) -> tuple[UpstreamFormat, list[_Page] | None]:
    if _is_json(text):
        pages = _pages(text)
        return _detect_json(pages), pages
    if _looks_like_csv(text):
        return UpstreamFormat.GENERIC_CSV, None
    raise _fail(
        "unrecognised export: neither provider JSON nor the generic CSV "
        "(whose header names at least date and input_tokens)"
    )


def detect_format(data: bytes) -> UpstreamFormat:
    """The format of an export, from its content; InvalidArgument when unrecognised."""
    return _detect(_text_of(data))[0]


def parse_export(data: bytes, fmt: UpstreamFormat | None = None) -> UpstreamExport:
    """Parse an export (of ``fmt``, or detected) into merged rows sorted by day, model, key.

    Raises InvalidArgument on ``export_data`` naming every bad line or result
    (up to a limit) when anything is malformed or out of bounds.
    """
    text = _text_of(data)
    pages: list[_Page] | None = None
    if fmt is None:
        fmt, pages = _detect(text)
    problems = _Problems()
    if fmt is UpstreamFormat.GENERIC_CSV:
        if _is_json(text):
            raise _fail("line 1: this is JSON, not the generic CSV")
        rows, provider = _csv_rows(text, problems)
    else:
        if pages is None:
            if not _is_json(text):
                raise _fail(f"line 1: a {fmt.value} export is JSON; this is not")
            pages = _pages(text)
        rows = _json_rows(pages, fmt, problems)
        provider = _PROVIDERS[fmt]
    problems.raise_if_any()
    return UpstreamExport(format=fmt, provider=provider, rows=_merge(rows, problems))
