"""Parse a price catalogue (the bundled ``metering/data/prices.json`` format).

Prices are decimal strings of currency units per million tokens, parsed
exactly into nanos; a value that needs more precision than a nano per million
tokens is an error, not a rounding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from metering.domain.money import NANOS_PER_UNIT, is_currency_code, parse_decimal_to_nanos
from metering.domain.pricing import LongContextTier, Price, Rates

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REQUEST_CREDITS_PER_CALL_MAX = 1_000_000


class CatalogueError(ValueError):
    """Every problem found in a catalogue, each naming the entry and field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


_RATE_FIELDS = {
    "input": "input_per_million",
    "output": "output_per_million",
    "cache_read": "cache_read_per_million",
    "cache_write_5m": "cache_write_5m_per_million",
    "cache_write_1h": "cache_write_1h_per_million",
    "reasoning": "reasoning_per_million",
}


def _time_us(text: str) -> int:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("needs a time zone offset (e.g. Z)")
    # Integer arithmetic: float timestamps round the wrong way before 1970.
    return (parsed - _EPOCH) // timedelta(microseconds=1)


def _rates(obj: dict[str, Any], where: str, problems: list[str]) -> Rates | None:
    values: dict[str, int | None] = {}
    for attr, key in _RATE_FIELDS.items():
        raw = obj.get(key)
        if raw is None:
            values[attr] = None
            continue
        if not isinstance(raw, str):
            problems.append(f"{where}.{key}: must be a decimal string, got {type(raw).__name__}")
            continue
        try:
            nanos = parse_decimal_to_nanos(raw)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
            continue
        if nanos < 0:
            problems.append(f"{where}.{key}: must not be negative")
            continue
        values[attr] = nanos
    input_nanos, output_nanos = values.get("input"), values.get("output")
    if input_nanos is None or output_nanos is None:
        for attr in ("input", "output"):
            if attr in values and values[attr] is None:
                problems.append(f"{where}.{_RATE_FIELDS[attr]}: required")
        return None
    return Rates(
        input=input_nanos,
        output=output_nanos,
        cache_read=values.get("cache_read"),
        cache_write_5m=values.get("cache_write_5m"),
        cache_write_1h=values.get("cache_write_1h"),
        reasoning=values.get("reasoning"),
    )


def _optional_decimal(
    entry: dict[str, Any], key: str, where: str, problems: list[str]
) -> int | None:
    """A non-negative decimal string of currency units, as nanos; None when absent."""
    raw = entry.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.append(f"{where}.{key}: must be a decimal string, got {type(raw).__name__}")
        return None
    try:
        nanos = parse_decimal_to_nanos(raw, NANOS_PER_UNIT)
    except ValueError as exc:
        problems.append(f"{where}.{key}: {exc}")
        return None
    if nanos < 0:
        problems.append(f"{where}.{key}: must not be negative")
        return None
    return nanos


def parse_catalogue(data: Any, source: str) -> list[Price]:
    """Parse a whole catalogue; raise CatalogueError listing every problem found."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("prices"), list):
        raise CatalogueError(source, ["top level: must be an object with a 'prices' list"])
    default_currency = data.get("currency_code", "USD")
    prices: list[Price] = []
    seen: set[tuple[str, int]] = set()
    for index, entry in enumerate(data["prices"]):
        where = f"prices[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object")
            continue
        price_id = entry.get("price_id")
        if isinstance(price_id, str) and price_id:
            where = f"prices[{index}] ({price_id})"
        else:
            problems.append(f"{where}.price_id: required string")
            continue
        version = entry.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            problems.append(f"{where}.version: must be a positive integer")
            continue
        if (price_id, version) in seen:
            problems.append(f"{where}: duplicate price_id and version")
        seen.add((price_id, version))
        provider, model = entry.get("provider"), entry.get("model")
        # The columns' bounds, and text any database stores (PostgreSQL refuses NUL).
        for key, limit in (("price_id", 200), ("provider", 64), ("model", 128)):
            value = entry.get(key)
            if isinstance(value, str) and (len(value) > limit or not value.isprintable()):
                problems.append(f"{where}.{key}: at most {limit} printable characters")
        for alias in entry.get("aliases", []) if isinstance(entry.get("aliases"), list) else []:
            if isinstance(alias, str) and (len(alias) > 128 or not alias.isprintable()):
                problems.append(f"{where}.aliases: at most 128 printable characters each")
        if not isinstance(provider, str) or not provider:
            problems.append(f"{where}.provider: required string")
        if not isinstance(model, str) or not model:
            problems.append(f"{where}.model: required string")
        currency = entry.get("currency_code", default_currency)
        if not isinstance(currency, str) or not is_currency_code(currency):
            problems.append(f"{where}.currency_code: must be an ISO 4217 code")
        try:
            effective_us = _time_us(str(entry.get("effective_time", "")))
        except ValueError as exc:
            problems.append(f"{where}.effective_time: not an RFC 3339 time ({exc})")
            effective_us = 0
        end_us = None
        if entry.get("end_time") is not None:
            try:
                end_us = _time_us(str(entry["end_time"]))
            except ValueError as exc:
                problems.append(f"{where}.end_time: not an RFC 3339 time ({exc})")
            else:
                if end_us <= effective_us:
                    problems.append(f"{where}.end_time: must be after effective_time")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            problems.append(f"{where}.aliases: must be a list of names")
            aliases = []
        rates = _rates(entry, where, problems)
        fee_nanos = _optional_decimal(entry, "request_fee", where, problems) or 0
        request_price = _optional_decimal(entry, "request_price", where, problems)
        request_credits = entry.get("request_credits")
        if request_credits is not None and (
            not isinstance(request_credits, int)
            or isinstance(request_credits, bool)
            or not 0 <= request_credits <= REQUEST_CREDITS_PER_CALL_MAX
        ):
            problems.append(
                f"{where}.request_credits: must be an integer "
                f"in [0, {REQUEST_CREDITS_PER_CALL_MAX}]"
            )
            request_credits = None
        batch_discount_bps = 0
        if entry.get("batch_discount_percent") is not None:
            try:
                if not isinstance(entry["batch_discount_percent"], str):
                    raise ValueError("must be a decimal string")
                # Percent with at most two decimals is an exact number of basis points.
                batch_discount_bps = parse_decimal_to_nanos(entry["batch_discount_percent"], 100)
            except ValueError as exc:
                problems.append(f"{where}.batch_discount_percent: {exc}")
            if not 0 <= batch_discount_bps <= 10_000:
                problems.append(f"{where}.batch_discount_percent: must be in [0, 100]")
                batch_discount_bps = 0
        account_id = entry.get("account_id", "")
        if not isinstance(account_id, str) or len(account_id) > 128 or not account_id.isprintable():
            problems.append(f"{where}.account_id: at most 128 printable characters")
            account_id = ""
        retired = entry.get("retired", False)
        if not isinstance(retired, bool):
            problems.append(f"{where}.retired: must be true or false")
            retired = False
        if isinstance(model, str) and "*" in model and entry.get("aliases"):
            problems.append(f"{where}.aliases: a pattern entry cannot have aliases")
        tier = None
        if entry.get("long_context") is not None:
            lc = entry["long_context"]
            threshold = lc.get("threshold_input_tokens") if isinstance(lc, dict) else None
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold <= 0:
                problems.append(
                    f"{where}.long_context.threshold_input_tokens: positive integer required"
                )
            else:
                tier_rates = _rates(lc, f"{where}.long_context", problems)
                if tier_rates is not None:
                    tier = LongContextTier(threshold, tier_rates)
        if rates is None or not isinstance(provider, str) or not isinstance(model, str):
            continue
        prices.append(
            Price(
                price_id=price_id,
                version=version,
                provider=provider.lower(),
                model=model,
                currency_code=str(currency),
                effective_time_us=effective_us,
                end_time_us=end_us,
                rates=rates,
                aliases=tuple(aliases),
                request_fee_nanos=fee_nanos,
                long_context=tier,
                source=str(entry.get("source", "")),
                source_date=str(entry.get("source_date", "")),
                account_id=account_id,
                request_price_nanos=request_price,
                request_credits=request_credits,
                batch_discount_bps=batch_discount_bps,
                retired=retired,
            )
        )
    if problems:
        raise CatalogueError(source, problems)
    return prices
