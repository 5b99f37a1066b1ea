"""Catalogue parsing: the bundled and test catalogues parse; a broken one reports every problem."""

from __future__ import annotations

import copy
import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from metering.domain.catalogue import CatalogueError, parse_catalogue
from metering.domain.pricing import LongContextTier, Rates

TEST_PRICES_PATH = Path(__file__).resolve().parents[1] / "data" / "prices.json"


def bundled() -> dict[str, Any]:
    text = resources.files("metering").joinpath("data", "prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_bundled_catalogue_parses_with_provenance() -> None:
    data = bundled()
    prices = parse_catalogue(data, "metering/data/prices.json")
    assert len(prices) == len(data["prices"]) > 0
    for raw, parsed in zip(data["prices"], prices, strict=True):
        assert raw["price_id"] == parsed.price_id
        # Every price says where it comes from and when that was checked.
        assert isinstance(raw.get("source"), str), raw["price_id"]
        assert raw["source"].strip(), raw["price_id"]
        assert parsed.source == raw["source"]
        assert isinstance(raw.get("source_date"), str), raw["price_id"]
        date.fromisoformat(raw["source_date"])
        assert parsed.source_date == raw["source_date"]


def test_bundled_catalogue_ids_are_unique() -> None:
    prices = parse_catalogue(bundled(), "bundled")
    keys = [(p.price_id, p.version) for p in prices]
    assert len(keys) == len(set(keys))


def test_test_catalogue_parses_exactly() -> None:
    prices = parse_catalogue(json.loads(TEST_PRICES_PATH.read_text(encoding="utf-8")), "test")
    by_key = {(p.price_id, p.version): p for p in prices}
    assert sorted(by_key) == [
        ("anthropic/claude-sonnet-4-5", 1),
        ("google/gemini-2.5-pro", 1),
        ("openai/gpt-4o-mini", 1),
        ("test/cf-pattern", 1),
        ("test/changing", 1),
        ("test/changing", 2),
        ("test/cheap", 1),
        ("test/fee-model", 1),
        ("test/per-request", 1),
    ]
    per_request = by_key[("test/per-request", 1)]
    assert (per_request.request_price_nanos, per_request.request_credits) == (20_000_000, 3)
    assert by_key[("openai/gpt-4o-mini", 1)].batch_discount_bps == 5000
    assert by_key[("test/cf-pattern", 1)].is_pattern
    sonnet = by_key[("anthropic/claude-sonnet-4-5", 1)]
    assert sonnet.provider == "anthropic"
    assert sonnet.currency_code == "USD"
    assert sonnet.effective_time_us == 1_759_104_000_000_000  # 2025-09-29T00:00:00Z
    assert sonnet.end_time_us is None
    assert sonnet.rates == Rates(
        input=3_000_000_000,
        output=15_000_000_000,
        cache_read=300_000_000,
        cache_write_5m=3_750_000_000,
        cache_write_1h=6_000_000_000,
    )
    assert sonnet.long_context == LongContextTier(
        200_000,
        Rates(
            input=6_000_000_000,
            output=22_500_000_000,
            cache_read=600_000_000,
            cache_write_5m=7_500_000_000,
            cache_write_1h=12_000_000_000,
        ),
    )
    assert by_key[("openai/gpt-4o-mini", 1)].rates == Rates(
        input=150_000_000, output=600_000_000, cache_read=75_000_000
    )
    assert by_key[("test/fee-model", 1)].request_fee_nanos == 10_000_000
    assert by_key[("test/cheap", 1)].request_fee_nanos == 0
    assert by_key[("test/changing", 1)].end_time_us == 1_767_225_600_000_000  # 2026-01-01
    assert by_key[("test/changing", 2)].effective_time_us == 1_767_225_600_000_000


def _entry(price_id: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "price_id": price_id,
        "version": 1,
        "provider": "test",
        "model": price_id.replace("/", "-"),
        "effective_time": "2025-01-01T00:00:00Z",
        "input_per_million": "1",
        "output_per_million": "2",
    }
    for key, value in fields.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def test_minimal_entry_defaults() -> None:
    (p,) = parse_catalogue({"prices": [_entry("t/x")]}, "s")
    assert p.version == 1
    assert p.currency_code == "USD"
    assert p.aliases == ()
    assert p.request_fee_nanos == 0
    assert p.long_context is None
    assert p.source == p.source_date == ""


def test_currency_defaults_to_top_level_and_entries_override() -> None:
    data = {"currency_code": "EUR", "prices": [_entry("t/a"), _entry("t/b", currency_code="GBP")]}
    assert [p.currency_code for p in parse_catalogue(data, "s")] == ["EUR", "GBP"]


def test_provider_is_lowercased_model_and_aliases_kept() -> None:
    (p,) = parse_catalogue(
        {"prices": [_entry("t/x", provider="OpenAI", model="GPT-X", aliases=["gpt-x-latest"])]}, "s"
    )
    assert (p.provider, p.model, p.aliases) == ("openai", "GPT-X", ("gpt-x-latest",))


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        ("2025-01-01T00:00:00Z", 1_735_689_600_000_000),
        ("2025-01-01T00:00:00+00:00", 1_735_689_600_000_000),
        ("2025-01-01T02:00:00+02:00", 1_735_689_600_000_000),
        ("2024-12-31T19:00:00-05:00", 1_735_689_600_000_000),
        ("2025-01-01T00:00:00.000001Z", 1_735_689_600_000_001),
        ("2025-01-01T00:00:00.999999Z", 1_735_689_600_999_999),
        ("2025-01-01T05:45:00.5+05:45", 1_735_689_600_500_000),
    ],
)
def test_effective_time_is_exact_microseconds(text: str, expected_us: int) -> None:
    (p,) = parse_catalogue({"prices": [_entry("t/x", effective_time=text)]}, "s")
    assert p.effective_time_us == expected_us


def test_exact_decimal_strings() -> None:
    (p,) = parse_catalogue(
        {
            "prices": [
                _entry(
                    "t/x",
                    input_per_million="0.000000001",
                    output_per_million="150.123456789",
                    reasoning_per_million="0",
                    request_fee="0.0005",
                )
            ]
        },
        "s",
    )
    assert p.rates == Rates(input=1, output=150_123_456_789, reasoning=0)
    assert p.request_fee_nanos == 500_000


BROKEN_ENTRIES: list[Any] = [
    _entry("bad/missing-output", output_per_million=None),
    _entry("bad/float", input_per_million=0.15),
    _entry("bad/negative", output_per_million="-1"),
    _entry("bad/too-precise", cache_read_per_million="0.0000000001"),
    _entry("bad/effective-time", effective_time="2025-13-01T00:00:00Z"),
    _entry("bad/naive-time", effective_time="2025-01-01T00:00:00"),
    _entry("ok/dup"),
    _entry("ok/dup", model="another-model"),
    _entry(
        "bad/threshold",
        long_context={
            "threshold_input_tokens": 0,
            "input_per_million": "2",
            "output_per_million": "4",
        },
    ),
    _entry("bad/tier", long_context={"threshold_input_tokens": 1000, "input_per_million": "2"}),
    _entry("bad/currency", currency_code="usd"),
    _entry("bad/end-time", end_time="yesterday"),
    _entry("bad/aliases", aliases="not-a-list"),
    _entry("bad/fee", request_fee="one cent"),
    _entry("bad/version", version=0),
    _entry("bad/provider", provider=""),
    _entry("bad/nan", cache_write_1h_per_million="NaN"),
    {"model": "no-id"},
    "not an object",
]

# (problem prefix, text the problem must contain); one per expected problem.
EXPECTED_PROBLEMS = [
    ("prices[0] (bad/missing-output).output_per_million: ", "required"),
    ("prices[1] (bad/float).input_per_million: ", "must be a decimal string, got float"),
    ("prices[2] (bad/negative).output_per_million: ", "must not be negative"),
    ("prices[3] (bad/too-precise).cache_read_per_million: ", "more precise than a nano"),
    ("prices[4] (bad/effective-time).effective_time: ", "not an RFC 3339 time"),
    ("prices[5] (bad/naive-time).effective_time: ", "time zone"),
    ("prices[7] (ok/dup): ", "duplicate price_id and version"),
    ("prices[8] (bad/threshold).long_context.threshold_input_tokens: ", "positive integer"),
    ("prices[9] (bad/tier).long_context.output_per_million: ", "required"),
    ("prices[10] (bad/currency).currency_code: ", "ISO 4217"),
    ("prices[11] (bad/end-time).end_time: ", "not an RFC 3339 time"),
    ("prices[12] (bad/aliases).aliases: ", "list of names"),
    ("prices[13] (bad/fee).request_fee: ", "not a decimal number"),
    ("prices[14] (bad/version).version: ", "positive integer"),
    ("prices[15] (bad/provider).provider: ", "required"),
    ("prices[16] (bad/nan).cache_write_1h_per_million: ", "not a finite number"),
    ("prices[17].price_id: ", "required"),
    ("prices[18]: ", "must be an object"),
]


def test_broken_catalogue_lists_every_problem() -> None:
    data = {"currency_code": "USD", "prices": copy.deepcopy(BROKEN_ENTRIES)}
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, "broken.json")
    error = caught.value
    assert error.source == "broken.json"
    unmatched = list(error.problems)
    for prefix, needle in EXPECTED_PROBLEMS:
        matches = [p for p in unmatched if p.startswith(prefix)]
        assert len(matches) == 1, (prefix, error.problems)
        assert needle in matches[0], matches[0]
        unmatched.remove(matches[0])
    assert unmatched == []
    # The message carries them all, on one line.
    message = str(error)
    assert message.startswith("broken.json: ")
    assert "\n" not in message
    for problem in error.problems:
        assert problem in message


def test_good_entries_beside_broken_ones_do_not_hide_problems() -> None:
    data = {"prices": [_entry("ok/a"), _entry("bad/b", output_per_million=2), _entry("ok/c")]}
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, "s")
    assert caught.value.problems == [
        "prices[1] (bad/b).output_per_million: must be a decimal string, got int"
    ]


def test_one_entry_with_several_problems_reports_each() -> None:
    data = {
        "prices": [
            _entry(
                "bad/many",
                input_per_million=None,
                output_per_million=None,
                currency_code="dollars",
                effective_time=None,
            )
        ]
    }
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, "s")
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("prices[0] (bad/many).currency_code: ")
    assert problems[1].startswith("prices[0] (bad/many).effective_time: ")
    assert problems[2] == "prices[0] (bad/many).input_per_million: required"
    assert problems[3] == "prices[0] (bad/many).output_per_million: required"


@pytest.mark.parametrize(
    "data",
    [[], {}, {"prices": {}}, {"prices": "x"}, None, "prices"],
)
def test_top_level_must_be_an_object_with_a_prices_list(data: Any) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, "s")
    assert caught.value.problems == ["top level: must be an object with a 'prices' list"]


def test_empty_prices_list_is_an_empty_catalogue() -> None:
    assert parse_catalogue({"prices": []}, "s") == []


@pytest.mark.parametrize(
    "threshold",
    [0, -1, "200000", 1.5, None, True, False],
)
def test_bad_long_context_threshold(threshold: Any) -> None:
    lc = {"threshold_input_tokens": threshold, "input_per_million": "2", "output_per_million": "4"}
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue({"prices": [_entry("bad/t", long_context=lc)]}, "s")
    assert caught.value.problems == [
        "prices[0] (bad/t).long_context.threshold_input_tokens: positive integer required"
    ]


@pytest.mark.parametrize("long_context", ["tier", ["x"], 5])
def test_long_context_must_be_an_object(long_context: Any) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue({"prices": [_entry("bad/lc", long_context=long_context)]}, "s")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("prices[0] (bad/lc).long_context.")


@pytest.mark.parametrize("fee", ["-0.01", "-1"])
def test_negative_request_fee_is_refused(fee: str) -> None:
    # A negative fee would credit the customer on every call.
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue({"prices": [_entry("bad/fee", request_fee=fee)]}, "s")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("prices[0] (bad/fee).request_fee: ")


@pytest.mark.parametrize("value", ["1e999999", "-1e999999"])
def test_absurd_exponent_is_a_catalogue_problem(value: str) -> None:
    # Must be reported like any other bad value, not crash with decimal.Overflow.
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue({"prices": [_entry("bad/exp", input_per_million=value)]}, "s")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("prices[0] (bad/exp).input_per_million: ")


def test_duplicate_across_versions_is_fine() -> None:
    data = {"prices": [_entry("t/x", version=1), _entry("t/x", version=2)]}
    assert [(p.price_id, p.version) for p in parse_catalogue(data, "s")] == [("t/x", 1), ("t/x", 2)]
