"""Upstream export parsing: the sample exports, money exactness, merging, bounds, bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.domain import upstream
from metering.domain.errors import InvalidArgument
from metering.domain.upstream import (
    UpstreamExport,
    UpstreamFormat,
    UpstreamRow,
    detect_format,
    parse_export,
)
from metering.domain.usage import TokenUsage

DATA = Path(__file__).parent.parent / "data" / "upstream"
SAMPLES = {
    UpstreamFormat.OPENAI_USAGE: DATA / "openai_usage.json",
    UpstreamFormat.OPENAI_COSTS: DATA / "openai_costs.json",
    UpstreamFormat.ANTHROPIC_USAGE: DATA / "anthropic_usage.json",
    UpstreamFormat.ANTHROPIC_COST: DATA / "anthropic_cost.json",
    UpstreamFormat.GENERIC_CSV: DATA / "generic.csv",
}

OPENAI_DAY_1 = 1740787200  # 2025-03-01T00:00:00Z


def sample(fmt: UpstreamFormat) -> bytes:
    return SAMPLES[fmt].read_bytes()


def row_of(
    export: UpstreamExport, day: str, model: str, key: str, request_id: str = ""
) -> UpstreamRow:
    matches = [
        r
        for r in export.rows
        if (r.day, r.model, r.key, r.request_id) == (day, model, key, request_id)
    ]
    assert len(matches) == 1, f"no single row for {(day, model, key, request_id)}"
    return matches[0]


def problems(excinfo: pytest.ExceptionInfo[InvalidArgument]) -> str:
    """All violation descriptions of an error, one string to search."""
    assert all(v.field == "export_data" for v in excinfo.value.violations)
    return " | ".join(v.description for v in excinfo.value.violations)


def rejects(data: bytes, fmt: UpstreamFormat | None = None) -> str:
    with pytest.raises(InvalidArgument) as excinfo:
        parse_export(data, fmt)
    return problems(excinfo)


def openai_page(results: list[dict[str, Any]], start_time: int = OPENAI_DAY_1) -> dict[str, Any]:
    return {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": start_time,
                "end_time": start_time + 86400,
                "results": results,
            }
        ],
        "has_more": False,
        "next_page": None,
    }


def openai_usage(**fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000,
        "output_tokens": 500,
        "input_cached_tokens": 800,
        "num_model_requests": 5,
        "project_id": "proj_a",
        "api_key_id": "key_a",
        "model": "gpt-4o-mini-2024-07-18",
    }
    result.update(fields)
    return result


def openai_cost(
    value: Any, line_item: str | None = "gpt-4o, input", **fields: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": "usd"},
        "line_item": line_item,
        "project_id": "proj_a",
    }
    result.update(fields)
    return result


def anthropic_page(
    results: list[dict[str, Any]], starting_at: str = "2025-08-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "data": [
            {"starting_at": starting_at, "ending_at": "2025-08-02T00:00:00Z", "results": results}
        ],
        "has_more": False,
        "next_page": None,
    }


def anthropic_usage(**fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "uncached_input_tokens": 1500,
        "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
        "cache_read_input_tokens": 200,
        "output_tokens": 500,
        "server_tool_use": {"web_search_requests": 10},
        "api_key_id": "apikey_01",
        "workspace_id": "wrkspc_01",
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "context_window": "0-200k",
    }
    result.update(fields)
    return result


def anthropic_cost(amount: Any, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "amount": amount,
        "currency": "USD",
        "workspace_id": "wrkspc_01",
        "model": "claude-sonnet-4-20250514",
        "description": "Claude Sonnet 4 Usage - Input Tokens",
        "cost_type": "tokens",
        "token_type": "uncached_input_tokens",
        "service_tier": "standard",
        "context_window": "0-200k",
    }
    result.update(fields)
    return result


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


CSV_HEADER = "date,model,api_key,input_tokens,output_tokens,cost"


def csv_bytes(*lines: str, header: str = CSV_HEADER) -> bytes:
    return ("\n".join((header, *lines)) + "\n").encode()


# --- detection ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(UpstreamFormat))
def test_each_sample_is_detected_as_its_format(fmt: UpstreamFormat) -> None:
    assert detect_format(sample(fmt)) is fmt
    assert parse_export(sample(fmt)).format is fmt


@pytest.mark.parametrize("fmt", list(UpstreamFormat))
def test_naming_the_format_gives_the_same_rows_as_detecting_it(fmt: UpstreamFormat) -> None:
    assert parse_export(sample(fmt), fmt) == parse_export(sample(fmt))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"hello world\n", "unrecognised export"),
        (b"a,b,c\n1,2,3\n", "unrecognised export"),
        (b'{"object": "page", "data": []}', "no results"),
        (b'{"data": [{"results": [{"x": 1}]}]}', "unrecognised JSON export"),
        (b'"just a string"', "unrecognised export"),
        (b'{"object": "list", "items": []}', "'data' array"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_unrecognised_exports_are_invalid_argument(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        detect_format(data)
    assert message in problems(excinfo)


def test_a_named_format_that_does_not_fit_the_data_is_rejected() -> None:
    assert "not" in rejects(sample(UpstreamFormat.GENERIC_CSV), UpstreamFormat.OPENAI_USAGE)
    assert "JSON, not the generic CSV" in rejects(
        sample(UpstreamFormat.OPENAI_USAGE), UpstreamFormat.GENERIC_CSV
    )
    # Usage results read as a costs export, and the other way round.
    assert "not a costs result" in rejects(
        sample(UpstreamFormat.OPENAI_USAGE), UpstreamFormat.OPENAI_COSTS
    )
    assert "is not a completions usage result" in rejects(
        sample(UpstreamFormat.OPENAI_COSTS), UpstreamFormat.OPENAI_USAGE
    )
    costs_without_object = openai_cost(1)
    del costs_without_object["object"]
    assert "looks like a costs export" in rejects(
        dumps(openai_page([costs_without_object])), UpstreamFormat.OPENAI_USAGE
    )
    assert "needs an 'amount'" in rejects(
        sample(UpstreamFormat.ANTHROPIC_USAGE), UpstreamFormat.ANTHROPIC_COST
    )
    assert "cost report" in rejects(
        sample(UpstreamFormat.ANTHROPIC_COST), UpstreamFormat.ANTHROPIC_USAGE
    )
    # OpenAI buckets start at unix seconds, Anthropic's at RFC 3339 strings.
    assert "start_time" in rejects(
        sample(UpstreamFormat.ANTHROPIC_USAGE), UpstreamFormat.OPENAI_USAGE
    )
    assert "starting_at" in rejects(
        sample(UpstreamFormat.OPENAI_USAGE), UpstreamFormat.ANTHROPIC_USAGE
    )


def test_an_empty_page_parses_to_no_rows_when_the_format_is_named() -> None:
    export = parse_export(dumps({"object": "page", "data": []}), UpstreamFormat.OPENAI_USAGE)
    assert export == UpstreamExport(UpstreamFormat.OPENAI_USAGE, "openai", [])


# --- OpenAI usage -------------------------------------------------------------------


def test_openai_usage_sample() -> None:
    export = parse_export(sample(UpstreamFormat.OPENAI_USAGE))
    assert export.provider == "openai"
    # 10 results over two concatenated pages; the batch and non-batch results
    # of one day x model x key merge into one row.
    assert len(export.rows) == 9
    assert [r.day for r in export.rows] == sorted(r.day for r in export.rows)
    assert {r.day for r in export.rows} == {"2025-03-01", "2025-03-02", "2025-03-03"}
    first = row_of(export, "2025-03-01", "gpt-4o-2024-08-06", "key_Ab3xY9pQ1mN7zT2c")
    assert first.usage == TokenUsage(
        input_tokens=182_340, output_tokens=24_518, cache_read_tokens=61_440
    )
    assert first.request_count == 212
    assert (first.cost_nanos, first.currency_code) == (None, None)
    merged = row_of(export, "2025-03-01", "gpt-4o-mini-2024-07-18", "key_W4eRt6yU8iO0pL2k")
    assert merged.usage.input_tokens == 98_112 + 402_300
    assert merged.usage.output_tokens == 20_004 + 88_951
    assert merged.request_count == 140 + 500
    # A result without an api key id falls back to its project.
    no_key = row_of(export, "2025-03-02", "gpt-4o-mini-2024-07-18", "proj_Zm5Nb7Vc9Xa1Sd3F")
    assert no_key.request_count == 4
    assert sum(r.request_count or 0 for r in export.rows) == 5302


def test_openai_usage_accepts_a_page_an_array_of_pages_and_json_lines() -> None:
    pages = [
        openai_page([openai_usage()]),
        openai_page([openai_usage(input_tokens=10, input_cached_tokens=0)], OPENAI_DAY_1 + 86400),
    ]
    as_array = parse_export(dumps(pages))
    as_lines = parse_export(b"\n".join(dumps(p) for p in pages) + b"\n")
    as_crlf_lines = parse_export(b"\r\n".join(dumps(p) for p in pages))
    assert as_array == as_lines == as_crlf_lines
    assert len(as_array.rows) == 2
    single = parse_export(dumps(pages[0]))
    assert single.rows == as_array.rows[:1]


def test_openai_usage_without_grouping_has_empty_model_and_key() -> None:
    result = openai_usage(model=None, api_key_id=None, project_id=None, user_id=None, batch=None)
    (row,) = parse_export(dumps(openai_page([result]))).rows
    assert (row.day, row.model, row.key, row.request_id) == ("2025-03-01", "", "", "")
    assert row.usage == TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=800)


def test_openai_hourly_buckets_merge_into_their_utc_day() -> None:
    results = [openai_usage(input_tokens=100, input_cached_tokens=0, num_model_requests=1)]
    pages = [openai_page(results, OPENAI_DAY_1 + hour * 3600) for hour in range(24)]
    (row,) = parse_export(dumps(pages)).rows
    assert row.day == "2025-03-01"
    assert row.usage.input_tokens == 2400
    assert row.request_count == 24


def test_openai_usage_cache_writes_are_part_of_the_prompt() -> None:
    result = openai_usage(
        input_tokens=1000,
        input_cached_tokens=300,
        input_cache_write_tokens=200,
        input_cache_write_12h_tokens=100,
    )
    (row,) = parse_export(dumps(openai_page([result]))).rows
    assert row.usage == TokenUsage(
        input_tokens=1000, output_tokens=500, cache_read_tokens=300, cache_write_tokens=300
    )


def test_openai_usage_missing_request_count_is_none_and_nulls_are_zero() -> None:
    result = openai_usage(num_model_requests=None, input_cached_tokens=None)
    (row,) = parse_export(dumps(openai_page([result]))).rows
    assert row.request_count is None
    assert row.usage.cache_read_tokens == 0


def test_openai_usage_cached_beyond_input_breaks_the_nesting() -> None:
    message = rejects(dumps(openai_page([openai_usage(input_tokens=10, input_cached_tokens=11)])))
    assert "page 1 (line 1), bucket 1, result 1" in message
    assert "exceed input_tokens" in message


def test_openai_usage_other_endpoints_are_refused() -> None:
    result = openai_usage(object="organization.usage.embeddings.result")
    assert "not a completions usage result" in rejects(
        dumps(openai_page([result])), UpstreamFormat.OPENAI_USAGE
    )


# --- OpenAI costs -------------------------------------------------------------------


def test_openai_costs_sample() -> None:
    export = parse_export(sample(UpstreamFormat.OPENAI_COSTS))
    assert export.provider == "openai"
    assert len(export.rows) == 7
    assert all(r.usage == TokenUsage() and r.request_count is None for r in export.rows)
    assert all(r.currency_code == "USD" for r in export.rows)
    # input + cached input + output of one model, one project, one day.
    gpt4o = row_of(export, "2025-03-01", "gpt-4o-2024-08-06", "proj_K8fLw2sVq0HnR4tE")
    assert gpt4o.cost_nanos == 302_250_000 + 76_800_000 + 245_180_000
    # 0.0451836000000001 + 0.0386736 = 0.0838572000000001: summed exactly,
    # then rounded once to the nano.
    mini = row_of(export, "2025-03-01", "gpt-4o-mini-2024-07-18", "proj_Zm5Nb7Vc9Xa1Sd3F")
    assert mini.cost_nanos == 83_857_200
    total = sum(r.cost_nanos or 0 for r in export.rows)
    assert total == 2_987_003_950  # the file's values sum to 2.9870039500000001


def test_openai_cost_line_item_gives_the_model() -> None:
    results = [
        openai_cost(Decimal("1"), "gpt-4o-mini-2024-07-18, input"),
        openai_cost(Decimal("2"), "gpt-4o-mini-2024-07-18, cached input"),
        openai_cost(Decimal("4"), "Web search tool calls"),
        openai_cost(Decimal("8"), None),
    ]
    export = parse_export(dumps_decimal(openai_page(results)))
    assert [(r.model, r.cost_nanos) for r in export.rows] == [
        ("", 8_000_000_000),
        ("Web search tool calls", 4_000_000_000),
        ("gpt-4o-mini-2024-07-18", 3_000_000_000),
    ]


def test_openai_cost_key_prefers_the_api_key_over_the_project() -> None:
    results = [openai_cost(1, api_key_id="key_x"), openai_cost(1, project_id=None)]
    keys = [r.key for r in parse_export(dumps(openai_page(results))).rows]
    assert keys == ["", "key_x"]


def test_openai_cost_without_amount_has_no_cost() -> None:
    result = openai_cost(1)
    result["amount"] = None
    (row,) = parse_export(dumps(openai_page([result]))).rows
    assert (row.cost_nanos, row.currency_code) == (None, None)


def dumps_decimal(value: Any) -> bytes:
    """JSON with Decimals written digit for digit (as a provider writes its numbers)."""

    def default(obj: object) -> str:
        assert isinstance(obj, Decimal)
        return f"@@{obj}@@"

    text = json.dumps(value, default=default)
    return text.replace('"@@', "").replace('@@"', "").encode()


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        ("0.1", 100_000_000),
        ("0.000000001", 1),
        ("0.0000000005", 1),  # a half: away from zero
        ("0.00000000049999", 0),
        ("-0.0000000005", -1),  # a credit rounds away from zero too
        ("-0.0000000004", 0),
        ("12.345678901234567890", 12_345_678_901),
        ("1E+3", 1_000_000_000_000),
        ("1e-12", 0),
        ("0", 0),
        ("0E-1000", 0),
        ("1000000000000", 10**21),
        ("-1000000000000", -(10**21)),
    ],
)
def test_openai_cost_values_convert_to_exact_nanos(value: str, nanos: int) -> None:
    (row,) = parse_export(dumps_decimal(openai_page([openai_cost(Decimal(value))]))).rows
    assert row.cost_nanos == nanos


def test_float_looking_json_numbers_are_never_floats() -> None:
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004.
    results = [openai_cost(Decimal("0.1")), openai_cost(Decimal("0.2"))]
    (row,) = parse_export(dumps_decimal(openai_page(results))).rows
    assert row.cost_nanos == 300_000_000


def test_amounts_are_summed_exactly_then_rounded_once() -> None:
    # Each 0.4 nano alone rounds to 0; their exact sum, 1.2 nanos, to 1.
    results = [openai_cost(Decimal("0.0000000004")) for _ in range(3)]
    (row,) = parse_export(dumps_decimal(openai_page(results))).rows
    assert row.cost_nanos == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1000000000000.000000001", "beyond"),
        ("-1e13", "beyond"),
        ("1e999999999", "beyond"),
        ("0." + "0" * 40 + "1", "decimal places"),
        ("1." + "1" * 60, "digits"),
    ],
)
def test_absurd_cost_values_are_refused(value: str, message: str) -> None:
    assert message in rejects(dumps_decimal(openai_page([openai_cost(Decimal(value))])))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused(value: str) -> None:
    data = dumps(openai_page([openai_cost(0)])).replace(b'"value": 0', f'"value": {value}'.encode())
    assert "not valid JSON" in rejects(data)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ({"value": "12abc", "currency": "usd"}, "not a decimal number"),
        ({"value": True, "currency": "usd"}, "boolean"),
        ({"value": [1], "currency": "usd"}, "array"),
        ({"value": 1, "currency": "dollars"}, "not an ISO 4217"),
        ({"value": 1}, "currency code"),
        ("1.00 usd", "must be an object"),
    ],
)
def test_malformed_openai_amounts_are_refused(amount: Any, message: str) -> None:
    result = openai_cost(1)
    result["amount"] = amount
    assert message in rejects(dumps(openai_page([result])), UpstreamFormat.OPENAI_COSTS)


# --- Anthropic usage ----------------------------------------------------------------


def test_anthropic_usage_sample() -> None:
    export = parse_export(sample(UpstreamFormat.ANTHROPIC_USAGE))
    assert export.provider == "anthropic"
    assert len(export.rows) == 7
    assert all(r.request_count is None and r.cost_nanos is None for r in export.rows)
    # standard + batch of one day x model x key merge.
    sonnet = row_of(
        export, "2025-08-01", "claude-sonnet-4-20250514", "apikey_01Rj2N8SVvo6BePZj99NhmiT"
    )
    assert sonnet.usage == TokenUsage(
        input_tokens=(150_230 + 48_000 + 12_000 + 610_400) + 40_000,
        output_tokens=88_215 + 21_000,
        cache_read_tokens=610_400,
        cache_write_tokens=60_000,
        cache_write_1h_tokens=12_000,
    )
    # Usage with no api key (e.g. the Console) is the workspace's.
    console = row_of(
        export, "2025-08-02", "claude-3-5-haiku-20241022", "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
    )
    assert console.usage == TokenUsage(input_tokens=1250, output_tokens=640)


def test_anthropic_usage_normalizes_to_the_whole_prompt() -> None:
    (row,) = parse_export(dumps(anthropic_page([anthropic_usage()]))).rows
    # The documented example: 1500 uncached + 200 read + 500 (5m) + 1000 (1h) written.
    assert row.usage == TokenUsage(
        input_tokens=3200,
        output_tokens=500,
        cache_read_tokens=200,
        cache_write_tokens=1500,
        cache_write_1h_tokens=1000,
    )
    assert row.key == "apikey_01"
    assert row.day == "2025-08-01"


def test_anthropic_usage_falls_back_to_workspace_then_nothing() -> None:
    results = [
        anthropic_usage(api_key_id=None, model="m1"),
        anthropic_usage(api_key_id=None, workspace_id=None, model="m2", cache_creation=None),
    ]
    export = parse_export(dumps(anthropic_page(results)))
    assert [(r.model, r.key) for r in export.rows] == [("m1", "wrkspc_01"), ("m2", "")]
    assert export.rows[1].usage.cache_write_tokens == 0


@pytest.mark.parametrize(
    ("starting_at", "day"),
    [
        ("2025-08-01T00:00:00Z", "2025-08-01"),
        ("2025-08-01T23:59:59.999999999Z", "2025-08-01"),
        ("2025-08-01T22:00:00-03:00", "2025-08-02"),
        ("2025-08-02T01:00:00+02:00", "2025-08-01"),
        ("2025-08-01t10:00:00z", "2025-08-01"),
    ],
)
def test_anthropic_bucket_day_is_the_utc_day(starting_at: str, day: str) -> None:
    (row,) = parse_export(dumps(anthropic_page([anthropic_usage()], starting_at))).rows
    assert row.day == day


@pytest.mark.parametrize(
    "starting_at",
    [
        "2025-08-01",
        "2025-08-01T00:00:00",
        "2025-02-30T00:00:00Z",
        "2025-08-01T24:00:00Z",
        "yesterday",
        1754006400,
    ],
)
def test_anthropic_bad_bucket_times_are_refused(starting_at: object) -> None:
    page = anthropic_page([anthropic_usage()])
    page["data"][0]["starting_at"] = starting_at
    message = rejects(dumps(page), UpstreamFormat.ANTHROPIC_USAGE)
    assert "page 1 (line 1), bucket 1, result 1: bucket starting_at" in message


# --- Anthropic cost -----------------------------------------------------------------


def test_anthropic_cost_sample() -> None:
    export = parse_export(sample(UpstreamFormat.ANTHROPIC_COST))
    assert export.provider == "anthropic"
    assert len(export.rows) == 5
    assert all(r.usage == TokenUsage() and r.request_count is None for r in export.rows)
    # Amounts are cents: 45.069 + 18.312 + 18.0 + 7.2 + 132.3225 + 6.0 + 15.75
    # = 242.6535 cents = $2.426535.
    sonnet = row_of(
        export, "2025-08-01", "claude-sonnet-4-20250514", "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
    )
    assert (sonnet.cost_nanos, sonnet.currency_code) == (2_426_535_000, "USD")
    # The default workspace has no id; web search costs have no model.
    haiku = row_of(export, "2025-08-01", "claude-3-5-haiku-20241022", "")
    assert haiku.cost_nanos == 1_574_917_600
    search = row_of(export, "2025-08-01", "", "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ")
    assert search.cost_nanos == 200_000_000


@pytest.mark.parametrize(
    ("amount", "nanos"),
    [
        ("123.45", 1_234_500_000),  # the documented example: $1.2345
        ("100", 1_000_000_000),
        ("0.0000001", 1),  # a millionth of a cent is a nano
        ("0.00000005", 1),  # half a nano, away from zero
        ("0.00000004", 0),
        ("-250", -2_500_000_000),
    ],
)
def test_anthropic_cost_amounts_are_cents(amount: str, nanos: int) -> None:
    (row,) = parse_export(dumps(anthropic_page([anthropic_cost(amount)]))).rows
    assert row.cost_nanos == nanos


def test_anthropic_cost_refuses_bad_amounts_and_currencies() -> None:
    assert "not a decimal number" in rejects(dumps(anthropic_page([anthropic_cost("12,50")])))
    assert "not a decimal number" in rejects(dumps(anthropic_page([anthropic_cost("1_000")])))
    assert "null" in rejects(dumps(anthropic_page([anthropic_cost(None)])))
    assert "beyond" in rejects(dumps(anthropic_page([anthropic_cost("100000000000001")])))
    assert "currency" in rejects(dumps(anthropic_page([anthropic_cost("1", currency=None)])))


def test_anthropic_cost_in_two_currencies_for_one_cell_is_refused() -> None:
    results = [anthropic_cost("100"), anthropic_cost("100", currency="EUR")]
    message = rejects(dumps(anthropic_page(results)))
    assert "page 1 (line 1), bucket 1, result 2: currency EUR differs from USD" in message


def test_different_currencies_in_different_cells_are_fine() -> None:
    results = [anthropic_cost("100"), anthropic_cost("100", currency="eur", workspace_id="w2")]
    export = parse_export(dumps(anthropic_page(results)))
    assert [(r.key, r.currency_code) for r in export.rows] == [("w2", "EUR"), ("wrkspc_01", "USD")]


# --- generic CSV --------------------------------------------------------------------


def test_generic_csv_sample() -> None:
    export = parse_export(sample(UpstreamFormat.GENERIC_CSV))
    assert export.provider == "openrouter"
    assert len(export.rows) == 9
    first = row_of(export, "2025-09-01", "mistral-large-2411", "relay-key-alpha")
    assert first.usage == TokenUsage(
        input_tokens=240_000, output_tokens=18_000, cache_read_tokens=60_000
    )
    assert (first.request_count, first.cost_nanos, first.currency_code) == (120, 612_000_000, "USD")
    # A blank currency is USD.
    assert (
        row_of(export, "2025-09-02", "mistral-large-2411", "relay-key-alpha").currency_code == "USD"
    )
    # Request rows stay apart.
    single = row_of(
        export,
        "2025-09-02",
        "llama-3.3-70b-instruct",
        "relay-key-beta",
        "gen-1725262000-aB3dE5fG7hJ9kL1m",
    )
    assert (single.request_count, single.cost_nanos) == (1, 1_562_560)
    # 0.449 of a nano rounds to none.
    tiny = row_of(
        export,
        "2025-09-02",
        "llama-3.3-70b-instruct",
        "relay-key-beta",
        "gen-1725262311-Zx8Cv6Bn4Mq2Wr0t",
    )
    assert tiny.cost_nanos == 0
    # 23:30 at UTC-2 is 01:30 UTC the next day.
    evening = row_of(export, "2025-09-03", "llama-3.3-70b-instruct", "relay-key-alpha")
    assert evening.usage.input_tokens == 48_000
    # A late row without cost merges into the day's total; blank cells are 0.
    merged = row_of(export, "2025-09-03", "mistral-large-2411", "relay-key-alpha")
    assert merged.request_count == 105
    assert merged.cost_nanos == 537_400_000
    assert merged.usage == TokenUsage(
        input_tokens=213_000,
        output_tokens=16_350,
        cache_read_tokens=51_000,
        cache_write_tokens=2_000,
    )
    # A blank requests cell is "not said".
    assert (
        row_of(export, "2025-09-03", "llama-3.3-70b-instruct", "relay-key-beta").request_count
        is None
    )


def test_generic_csv_minimal_columns_and_defaults() -> None:
    export = parse_export(
        csv_bytes(
            "2025-09-01,m,k,10,5,", header="date,model,api_key,input_tokens,output_tokens,cost"
        )
    )
    (row,) = export.rows
    assert export.provider == ""
    assert row == UpstreamRow(
        day="2025-09-01",
        model="m",
        key="k",
        request_id="",
        usage=TokenUsage(input_tokens=10, output_tokens=5),
        request_count=None,
        cost_nanos=None,
        currency_code=None,
    )


def test_generic_csv_header_is_case_insensitive_and_order_free_and_ignores_unknown() -> None:
    data = csv_bytes(
        "x,7,3,M,P,2025-09-01,1.5,eur",
        header=" Extra ,OUTPUT_TOKENS,Input_Tokens,Model,Project,DATE,Cost,Currency",
    )
    (row,) = parse_export(data).rows
    assert (row.model, row.key, row.cost_nanos, row.currency_code) == (
        "M",
        "P",
        1_500_000_000,
        "EUR",
    )
    assert row.usage == TokenUsage(input_tokens=3, output_tokens=7)


def test_generic_csv_api_key_wins_over_project_and_extra_token_columns() -> None:
    header = (
        "date,model,api_key,project,input_tokens,output_tokens,"
        "cache_write_tokens,cache_write_1h_tokens,reasoning_tokens"
    )
    export = parse_export(
        csv_bytes("2025-09-01,m,k,p,100,50,40,10,20", "2025-09-01,m,,p,1,1,0,0,0", header=header)
    )
    assert [r.key for r in export.rows] == ["k", "p"]
    assert export.rows[0].usage == TokenUsage(
        input_tokens=100,
        output_tokens=50,
        cache_write_tokens=40,
        cache_write_1h_tokens=10,
        reasoning_tokens=20,
    )


def test_generic_csv_with_bom_crlf_and_quotes() -> None:
    data = (
        b"\xef\xbb\xbfdate,model,api_key,input_tokens,output_tokens\r\n"
        b'2025-09-01,"gpt, quoted",k,1,2\r\n\r\n'
    )
    (row,) = parse_export(data).rows
    assert row.model == "gpt, quoted"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2025-09-01,m,k,-5,1,", "line 3: input_tokens must not be negative"),
        ("2025-09-01,m,k,1.5,1,", "line 3: input_tokens '1.5' is not a whole number"),
        ("2025-09-01,m,k,ten,1,", "line 3: input_tokens 'ten' is not a whole number"),
        ("2025-09-01,m,k,1_000,1,", "is not a whole number"),
        ("2025-09-01,m,k,١٢,1,", "is not a whole number"),
        ("2025-09-01,m,k,1000000000001,1,", "at most 1000000000000"),
        ("2025-09-01,m,k,,1,", "line 3: input_tokens is blank"),
        ("2025-09-01,m,k,1,1,abc", "line 3: cost 'abc' is not a decimal number"),
        ("2025-09-01,m,k,1,1,NaN", "not a decimal number"),
        ("2025-09-01,m,k,1,1,1e13", "beyond"),
        ("2025-13-01,m,k,1,1,", "line 3: date '2025-13-01' is not a valid date"),
        ("2025-02-29,m,k,1,1,", "not a valid date"),
        ("01/09/2025,m,k,1,1,", "neither YYYY-MM-DD nor an RFC 3339"),
        ("2025-09-01T10:00:00,m,k,1,1,", "neither YYYY-MM-DD"),
        (",m,k,1,1,", "line 3: date is blank"),
        ("2025-09-01,m,k,1,1", "line 3: has 5 cells, the header has 6"),
        ("2025-09-01,m,k,1,1,0,extra", "has 7 cells"),
        ("2025-09-01," + "m" * 129 + ",k,1,1,", "model must be at most 128 printable"),
        ("2025-09-01,m\x07,k,1,1,", "model must be at most 128 printable"),
        ("2025-09-01,m,k\tx,1,1,", "api_key must be at most 128 printable"),
    ],
)
def test_generic_csv_bad_cells_name_their_line(line: str, message: str) -> None:
    assert message in rejects(csv_bytes("2025-09-01,ok,k,1,1,", line))


def test_generic_csv_cache_beyond_input_is_refused() -> None:
    header = "date,model,api_key,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens"
    assert "line 2: cached tokens exceed input_tokens" in rejects(
        csv_bytes("2025-09-01,m,k,10,1,6,5", header=header)
    )


def test_generic_csv_mixed_currencies_in_one_cell_are_refused() -> None:
    header = "date,model,api_key,request_id,input_tokens,output_tokens,cost,currency"
    data = csv_bytes("2025-09-01,m,k,r1,1,1,1,USD", "2025-09-01,m,k,r2,1,1,1,EUR", header=header)
    assert "line 3: currency EUR differs from USD at line 2" in rejects(data)


def test_generic_csv_mixed_providers_are_refused() -> None:
    header = "date,provider,model,api_key,input_tokens,output_tokens"
    data = csv_bytes(
        "2025-09-01,openai,m,k,1,1",
        "2025-09-01,OpenAI,m,k,1,1",
        "2025-09-01,groq,m,k,1,1",
        header=header,
    )
    assert "line 4: provider 'groq' differs from 'openai' at line 2" in rejects(data)


def test_generic_csv_bad_currency_is_refused() -> None:
    header = "date,model,api_key,input_tokens,output_tokens,cost,currency"
    assert "not an ISO 4217" in rejects(csv_bytes("2025-09-01,m,k,1,1,1,US$", header=header))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("date,model,input_tokens,output_tokens", "api_key (or project)"),
        ("date,model,api_key,input_tokens", "output_tokens"),
        ("date,api_key,input_tokens,output_tokens", "model"),
        ("date,model,api_key,input_tokens,output_tokens,Model", "column 'model' appears twice"),
    ],
)
def test_generic_csv_header_problems(header: str, message: str) -> None:
    data = csv_bytes(",".join(["2025-09-01"] + ["1"] * (header.count(","))), header=header)
    assert message in rejects(data, UpstreamFormat.GENERIC_CSV)


def test_generic_csv_reports_several_problems_at_once_but_not_endlessly() -> None:
    lines = [f"2025-09-01,m,k,-{i},1," for i in range(1, 100)]
    with pytest.raises(InvalidArgument) as excinfo:
        parse_export(csv_bytes(*lines))
    violations = excinfo.value.violations
    assert len(violations) == 21
    assert violations[0].description.startswith("line 2:")
    assert violations[-1].description == "stopped after 20 problems"


def test_generic_csv_unterminated_quote_is_invalid_argument() -> None:
    message = rejects(csv_bytes('2025-09-01,"m,k,1,1,'), UpstreamFormat.GENERIC_CSV)
    assert "not valid CSV" in message or "cells" in message


# --- limits -------------------------------------------------------------------------


def test_too_large_an_export_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "EXPORT_BYTES_MAX", 100)
    assert "more than the 100 allowed" in rejects(sample(UpstreamFormat.GENERIC_CSV))
    with pytest.raises(InvalidArgument):
        detect_format(sample(UpstreamFormat.OPENAI_USAGE))


def test_the_byte_limit_is_64_mib() -> None:
    assert upstream.EXPORT_BYTES_MAX == 64 * 1024 * 1024
    assert "allowed" in rejects(b" " * (upstream.EXPORT_BYTES_MAX + 1))


def test_too_many_rows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "EXPORT_ROWS_MAX", 3)
    assert "line 5: more than 3 rows" in rejects(csv_bytes(*["2025-09-01,m,k,1,1,"] * 4))
    assert "result 4: more than 3 rows" in rejects(dumps(openai_page([openai_usage()] * 4)))
    # Exactly the limit is fine.
    assert len(parse_export(csv_bytes(*["2025-09-01,m,k,1,1,"] * 3)).rows) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input_tokens": -1}, "input_tokens must not be negative"),
        ({"output_tokens": 10**12 + 1}, "output_tokens must be at most"),
        ({"input_tokens": 1.5}, "input_tokens must be a whole number"),
        ({"input_tokens": "100"}, "input_tokens must be a number, got string"),
        ({"input_tokens": True}, "got boolean"),
        ({"num_model_requests": -3}, "num_model_requests must not be negative"),
        ({"model": 4}, "model must be a string, got number"),
        ({"model": "x" * 129}, "at most 128 printable"),
        ({"api_key_id": "key\nwith newline"}, "at most 128 printable"),
        ({"project_id": ["p"]}, "project_id must be a string, got array"),
    ],
)
def test_bad_openai_usage_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    result = openai_usage(**fields)
    assert message in rejects(dumps(openai_page([result])), UpstreamFormat.OPENAI_USAGE)


def test_integral_json_numbers_are_counts() -> None:
    data = dumps(openai_page([openai_usage()])).replace(
        b'"input_tokens": 1000', b'"input_tokens": 1e3'
    )
    (row,) = parse_export(data).rows
    assert row.usage.input_tokens == 1000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uncached_input_tokens": -1}, "uncached_input_tokens must not be negative"),
        (
            {"cache_creation": {"ephemeral_1h_input_tokens": "5"}},
            "ephemeral_1h_input_tokens must be a number",
        ),
        ({"cache_creation": [1]}, "cache_creation must be an object"),
        (
            {"uncached_input_tokens": 10**12, "cache_read_input_tokens": 10**12},
            "input_tokens must be at most 1000000000000 per row",
        ),
    ],
)
def test_bad_anthropic_usage_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    assert message in rejects(dumps(anthropic_page([anthropic_usage(**fields)])))


@pytest.mark.parametrize(
    ("start_time", "message"),
    [
        (-1, "not a plausible unix time"),
        ("1740787200", "integer of unix seconds"),
        (10**13, "plausible"),
        (1.5, "integer"),
    ],
)
def test_bad_openai_bucket_times_are_refused(start_time: Any, message: str) -> None:
    page = openai_page([openai_usage()])
    page["data"][0]["start_time"] = start_time
    assert message in rejects(dumps(page), UpstreamFormat.OPENAI_USAGE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"object": "page", "data": [', "line 1 column"),
        (b'{"object": "page",\n "data": [1]}', "expected a bucket object"),
        (b'{"object": "page", "data": [{"start_time": 0}]}', "'results' array"),
        (
            b'{"object": "page", "data": [{"start_time": 0, "results": [7]}]}',
            "result 1: expected an object",
        ),
        (b"[1, 2]", "expected a page object"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (
            b'{"data": [{"start_time": 0, "results": [{"input_tokens": ' + b"9" * 5000 + b"}]}]}",
            "not valid JSON",
        ),
        (b'{"object": "page", "data": []}\n{"object": "page", "data": [}', "line 2 column"),
    ],
)
def test_malformed_json_is_invalid_argument(data: bytes, message: str) -> None:
    assert message in rejects(data, UpstreamFormat.OPENAI_USAGE)


def test_json_lines_errors_name_the_page_and_its_line() -> None:
    good = dumps(openai_page([openai_usage()]))
    bad = dumps(openai_page([openai_usage(), openai_usage(output_tokens=-1)]))
    message = rejects(good + b"\n\n" + bad + b"\n")
    assert "page 2 (line 3), bucket 1, result 2: output_tokens must not be negative" in message


# --- merging ------------------------------------------------------------------------


def test_rows_merge_per_day_model_key_request_and_sort() -> None:
    header = "date,model,api_key,request_id,requests,input_tokens,output_tokens,cost"
    data = csv_bytes(
        "2025-09-02,b,k,,1,10,1,0.5",
        "2025-09-01,b,k,,,10,1,",
        "2025-09-01,a,k,,2,10,1,0.25",
        "2025-09-01,b,k,,3,10,1,0.125",
        "2025-09-01,a,k,req-1,1,10,1,",
        "2025-09-01,a,j,,1,10,1,",
        header=header,
    )
    rows = parse_export(data).rows
    assert [(r.day, r.model, r.key, r.request_id) for r in rows] == [
        ("2025-09-01", "a", "j", ""),
        ("2025-09-01", "a", "k", ""),
        ("2025-09-01", "a", "k", "req-1"),
        ("2025-09-01", "b", "k", ""),
        ("2025-09-02", "b", "k", ""),
    ]
    b_day_1 = rows[3]
    # None + 3 = 3; absent cost + 0.125 = 0.125.
    assert (b_day_1.request_count, b_day_1.cost_nanos, b_day_1.currency_code) == (
        3,
        125_000_000,
        "USD",
    )
    assert b_day_1.usage == TokenUsage(input_tokens=20, output_tokens=2)
    assert (rows[2].cost_nanos, rows[2].currency_code) == (None, None)


def test_usage_and_cost_rows_of_every_sample_satisfy_the_nesting() -> None:
    from metering.domain.errors import Violations

    for fmt in UpstreamFormat:
        for row in parse_export(sample(fmt)).rows:
            violations = Violations()
            row.usage.check(violations)
            assert violations.items == [], (fmt, row)
            assert (row.cost_nanos is None) == (row.currency_code is None)
            assert len(row.day) == 10


# --- fuzzing: garbage in, InvalidArgument out ---------------------------------------


def parse_or_invalid(data: bytes, fmt: UpstreamFormat | None = None) -> None:
    try:
        parse_export(data, fmt)
    except InvalidArgument as exc:
        assert exc.violations
        assert all(v.field == "export_data" and v.description for v in exc.violations)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, *UpstreamFormat]))
def test_random_bytes_never_crash(data: bytes, fmt: UpstreamFormat | None) -> None:
    parse_or_invalid(data, fmt)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(UpstreamFormat)),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=12),
    st.booleans(),
)
def test_garbled_samples_never_crash(
    fmt: UpstreamFormat, position: int, cut: int, insert: bytes, name_format: bool
) -> None:
    original = sample(fmt)
    at = position % (len(original) + 1)
    garbled = original[:at] + insert + original[at + cut :]
    parse_or_invalid(garbled, fmt if name_format else None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.text(max_size=10)
    | st.sampled_from(["2025-08-01T00:00:00Z", "usd", "USD", "gpt-4o, input", "1.5"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "object",
                    "data",
                    "results",
                    "start_time",
                    "starting_at",
                    "amount",
                    "value",
                    "currency",
                    "input_tokens",
                    "input_cached_tokens",
                    "output_tokens",
                    "uncached_input_tokens",
                    "cache_creation",
                    "ephemeral_1h_input_tokens",
                    "model",
                    "api_key_id",
                    "line_item",
                    "num_model_requests",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from([None, *UpstreamFormat]))
def test_random_json_structures_never_crash(value: object, fmt: UpstreamFormat | None) -> None:
    parse_or_invalid(json.dumps(value).encode(), fmt)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.text(alphabet='0123456789-.,"aZ:T \t\x00é', max_size=12), min_size=1, max_size=8
        ),
        max_size=6,
    )
)
def test_random_csv_never_crashes(cells: list[list[str]]) -> None:
    header = "date,model,api_key,requests,input_tokens,output_tokens,cost,currency"
    body = "\n".join(",".join(row) for row in cells)
    parse_or_invalid(f"{header}\n{body}\n".encode(), None)
