"""Cost to the nano, price resolution, and what a record charges per billing mode.

Rates in the catalogues are currency units per million tokens; 1 unit is
1,000,000,000 nanos, so "$0.05/M" is 50,000,000 nanos per million tokens and a
token costs 50,000,000 / 1,000,000 = 50 nanos.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.domain.accounts import (
    Account,
    BillingMode,
    Charge,
    RequestAsset,
    charge_for,
    is_account_id,
    is_exhausted,
    is_request_id,
)
from metering.domain.catalogue import parse_catalogue
from metering.domain.errors import FailedPrecondition, InvalidArgument, Violations
from metering.domain.pricing import LongContextTier, Price, PriceBook, Rates
from metering.domain.usage import TokenUsage

TEST_PRICES_PATH = Path(__file__).resolve().parents[1] / "data" / "prices.json"
TEST_CATALOGUE: dict[str, Any] = json.loads(TEST_PRICES_PATH.read_text(encoding="utf-8"))
BUNDLED_CATALOGUE: dict[str, Any] = json.loads(
    resources.files("metering").joinpath("data", "prices.json").read_text(encoding="utf-8")
)
TEST_PRICES = parse_catalogue(TEST_CATALOGUE, "tests/data/prices.json")
BUNDLED_PRICES = parse_catalogue(BUNDLED_CATALOGUE, "metering/data/prices.json")
BOOK = PriceBook.of(TEST_PRICES)
BUNDLED_BOOK = PriceBook.of(BUNDLED_PRICES)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time, computed without floats."""
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH) // timedelta(
        microseconds=1
    )


NOW = us("2026-06-01T00:00:00Z")


def price(price_id: str, version: int = 1) -> Price:
    return next(p for p in TEST_PRICES if p.price_id == price_id and p.version == version)


def make_price(
    rates: Rates,
    *,
    price_id: str = "t/p",
    version: int = 1,
    provider: str = "test",
    model: str = "m",
    currency_code: str = "USD",
    effective: str = "2020-01-01T00:00:00Z",
    end: str | None = None,
    aliases: tuple[str, ...] = (),
    request_fee_nanos: int = 0,
    long_context: LongContextTier | None = None,
    account_id: str = "",
) -> Price:
    return Price(
        account_id=account_id,
        price_id=price_id,
        version=version,
        provider=provider,
        model=model,
        currency_code=currency_code,
        effective_time_us=us(effective),
        end_time_us=None if end is None else us(end),
        rates=rates,
        aliases=aliases,
        request_fee_nanos=request_fee_nanos,
        long_context=long_context,
    )


def valid(usage: TokenUsage) -> TokenUsage:
    violations = Violations()
    usage.check(violations)
    assert violations.items == [], violations.items
    return usage


# --- hand-computed cost vectors ---------------------------------------------------


def test_thirteen_tokens_at_five_cents_per_million() -> None:
    # $0.05/M = 50,000,000 nanos per million tokens.
    # 13 * 50,000,000 = 650,000,000 (1e-15 units); / 1,000,000 = 650 nanos.
    cheap = price("test/cheap")
    assert cheap.rates.input == 50_000_000
    assert cheap.token_cost_nanos(valid(TokenUsage(input_tokens=13))) == 650


def test_gpt_4o_mini_with_cached_prompt() -> None:
    # $0.15/M in, $0.075/M cache read, $0.60/M out.
    # uncached input  800 * 150,000,000 = 120,000,000,000
    # cache read      200 *  75,000,000 =  15,000,000,000
    # output          500 * 600,000,000 = 300,000,000,000
    # sum 435,000,000,000 / 1,000,000 = 435,000 nanos ($0.000435)
    usage = valid(TokenUsage(input_tokens=1000, cache_read_tokens=200, output_tokens=500))
    resolved = BOOK.resolve("openai", "gpt-4o-mini", "USD", NOW)
    assert resolved.price_id == "openai/gpt-4o-mini"
    assert resolved.token_cost_nanos(usage) == 435_000


def test_claude_sonnet_4_5_with_both_cache_writes_and_reads() -> None:
    # $3 in, $15 out, $0.30 cache read, $3.75 5-minute write, $6 1-hour write (per million).
    # input 10,000 = 1,000 uncached + 6,000 read + 3,000 written (1,000 of them for 1 hour)
    # uncached input  1,000 *  3,000,000,000 =  3,000,000,000,000
    # cache read      6,000 *    300,000,000 =  1,800,000,000,000
    # 5m write        2,000 *  3,750,000,000 =  7,500,000,000,000
    # 1h write        1,000 *  6,000,000,000 =  6,000,000,000,000
    # output          1,500 * 15,000,000,000 = 22,500,000,000,000
    # reasoning         500 * 15,000,000,000 =  7,500,000,000,000 (falls back to output)
    # sum 48,300,000,000,000 / 1,000,000 = 48,300,000 nanos ($0.0483)
    usage = valid(
        TokenUsage(
            input_tokens=10_000,
            cache_read_tokens=6_000,
            cache_write_tokens=3_000,
            cache_write_1h_tokens=1_000,
            output_tokens=2_000,
            reasoning_tokens=500,
        )
    )
    sonnet = BOOK.resolve("anthropic", "claude-sonnet-4-5", "USD", NOW)
    assert sonnet.rates == Rates(
        input=3_000_000_000,
        output=15_000_000_000,
        cache_read=300_000_000,
        cache_write_5m=3_750_000_000,
        cache_write_1h=6_000_000_000,
    )
    assert sonnet.token_cost_nanos(usage) == 48_300_000


def test_claude_sonnet_4_5_long_context_tier() -> None:
    # input 250,000 > 200,000: the whole call is billed at $6 in, $0.60 read, $22.50 out.
    # uncached input 150,000 *  6,000,000,000 = 900,000,000,000,000
    # cache read     100,000 *    600,000,000 =  60,000,000,000,000
    # output           1,000 * 22,500,000,000 =  22,500,000,000,000
    # sum 982,500,000,000,000 / 1,000,000 = 982,500,000 nanos
    usage = valid(TokenUsage(input_tokens=250_000, cache_read_tokens=100_000, output_tokens=1_000))
    assert BOOK.resolve("anthropic", "claude-sonnet-4-5", "USD", NOW).token_cost_nanos(usage) == (
        982_500_000
    )


def test_gemini_2_5_pro_above_long_context_threshold() -> None:
    # 200,001 > 200,000: tier $2.50 in, $15 out.
    # input  200,001 *  2,500,000,000 = 500,002,500,000,000
    # output   1,000 * 15,000,000,000 =  15,000,000,000,000
    # sum 515,002,500,000,000 / 1,000,000 = 515,002,500 nanos
    usage = valid(TokenUsage(input_tokens=200_001, output_tokens=1_000))
    gemini = BOOK.resolve("google", "gemini-2.5-pro", "USD", NOW)
    assert gemini.token_cost_nanos(usage) == 515_002_500


def test_gemini_2_5_pro_at_exactly_the_threshold_is_base_tier() -> None:
    # 200,000 is not above 200,000: base $1.25 in, $10 out.
    # input  200,000 *  1,250,000,000 = 250,000,000,000,000
    # output   1,000 * 10,000,000,000 =  10,000,000,000,000
    # sum 260,000,000,000,000 / 1,000,000 = 260,000,000 nanos
    usage = valid(TokenUsage(input_tokens=200_000, output_tokens=1_000))
    gemini = BOOK.resolve("google", "gemini-2.5-pro", "USD", NOW)
    assert gemini.rates_for(usage) is gemini.rates
    assert gemini.token_cost_nanos(usage) == 260_000_000


def test_gemini_long_context_tier_cache_reads() -> None:
    # 300,000 in (100,000 cached) + 0 out, tier: $2.50 in, $0.25 read.
    # uncached 200,000 * 2,500,000,000 = 500,000,000,000,000
    # read     100,000 *   250,000,000 =  25,000,000,000,000
    # sum 525,000,000,000,000 / 1,000,000 = 525,000,000 nanos
    usage = valid(TokenUsage(input_tokens=300_000, cache_read_tokens=100_000))
    assert BOOK.resolve("google", "gemini-2.5-pro", "USD", NOW).token_cost_nanos(usage) == (
        525_000_000
    )


@pytest.mark.parametrize(
    ("rate_nanos_per_million", "tokens", "expected"),
    [
        # $0.0005/M = 500,000 nanos/M: 1 * 500,000 / 1,000,000 = 0.5 nano -> rounds up to 1
        (500_000, 1, 1),
        # 2 * 500,000 / 1,000,000 = 1.0 nano exactly
        (500_000, 2, 1),
        # 3 * 500,000 / 1,000,000 = 1.5 nanos -> 2
        (500_000, 3, 2),
        # $0.0015/M = 1,500,000 nanos/M: 1 * 1,500,000 / 1,000,000 = 1.5 nanos -> 2
        (1_500_000, 1, 2),
        # $0.000499999/M: 1 * 499,999 / 1,000,000 = 0.499999 nano -> 0
        (499_999, 1, 0),
        # $0.000500001/M: 0.500001 nano -> 1
        (500_001, 1, 1),
        # $0.0000025/M: 2,500 / 1,000,000 = 0.0025 nano -> 0
        (2_500, 1, 0),
        # 200 * 2,500 / 1,000,000 = 0.5 nano -> 1
        (2_500, 200, 1),
    ],
)
def test_half_nano_rounds_up(rate_nanos_per_million: int, tokens: int, expected: int) -> None:
    p = make_price(Rates(input=rate_nanos_per_million, output=0))
    assert p.token_cost_nanos(valid(TokenUsage(input_tokens=tokens))) == expected


def test_rounding_happens_once_per_record() -> None:
    # 1 input at 0.5 nano + 1 output at 0.5 nano = 1.0 nano exactly.
    # Rounding each component first would give 1 + 1 = 2.
    p = make_price(Rates(input=500_000, output=500_000))
    assert p.token_cost_nanos(valid(TokenUsage(input_tokens=1, output_tokens=1))) == 1


def test_missing_rates_fall_back() -> None:
    # Only input ($1/M = 1,000,000,000 nanos/M) and output ($2/M) are given:
    # cache read and 5m write fall back to input, 1h write to 5m write (thus input),
    # reasoning to output. Everything is billed as plain input/output:
    # input 100 * 1,000,000,000 + output 10 * 2,000,000,000 = 120,000,000,000 -> 120,000 nanos
    p = make_price(Rates(input=1_000_000_000, output=2_000_000_000))
    usage = valid(
        TokenUsage(
            input_tokens=100,
            cache_read_tokens=30,
            cache_write_tokens=40,
            cache_write_1h_tokens=10,
            output_tokens=10,
            reasoning_tokens=4,
        )
    )
    assert p.token_cost_nanos(usage) == 120_000


def test_one_hour_write_falls_back_to_five_minute_write() -> None:
    # input $1/M, 5m write $1.25/M, no 1h rate: the 1h write bills at $1.25/M.
    # uncached  60 * 1,000,000,000 =  60,000,000,000
    # 5m write  30 * 1,250,000,000 =  37,500,000,000
    # 1h write  10 * 1,250,000,000 =  12,500,000,000
    # sum 110,000,000,000 / 1,000,000 = 110,000 nanos
    p = make_price(Rates(input=1_000_000_000, output=0, cache_write_5m=1_250_000_000))
    usage = valid(TokenUsage(input_tokens=100, cache_write_tokens=40, cache_write_1h_tokens=10))
    assert p.token_cost_nanos(usage) == 110_000


def test_explicit_reasoning_rate() -> None:
    # output $2/M, reasoning $3/M: 10 output of which 4 reasoning.
    # plain output 6 * 2,000,000,000 = 12,000,000,000; reasoning 4 * 3,000,000,000 = 12,000,000,000
    # sum 24,000,000,000 / 1,000,000 = 24,000 nanos
    p = make_price(Rates(input=0, output=2_000_000_000, reasoning=3_000_000_000))
    usage = valid(TokenUsage(output_tokens=10, reasoning_tokens=4))
    assert p.token_cost_nanos(usage) == 24_000


def test_zero_usage_costs_nothing() -> None:
    for p in TEST_PRICES:
        assert p.token_cost_nanos(TokenUsage()) == 0


# --- billing modes ----------------------------------------------------------------

# fee-model: $1/M in, $2/M out, $0.01 per request (10,000,000 nanos).
# 1000 in * 1,000,000,000 + 500 out * 2,000,000,000 = 2,000,000,000,000 -> 2,000,000 nanos
FEE_USAGE = TokenUsage(input_tokens=1000, output_tokens=500)
# cheap-model: $0.05/M in, $0.10/M out.
# 1000 * 50,000,000 + 500 * 100,000,000 = 100,000,000,000 -> 100,000 nanos


def _billing(mode: BillingMode = BillingMode.TOKEN, **settings: Any) -> Account:
    return Account("acct", "USD", mode, False, 0, **settings)


def test_token_mode_adds_request_fee() -> None:
    fee_model = price("test/fee-model")
    assert fee_model.request_fee_nanos == 10_000_000
    assert fee_model.token_cost_nanos(FEE_USAGE) == 2_000_000
    # 2,000,000 token cost + 10,000,000 fee
    assert charge_for(_billing(), BillingMode.TOKEN, fee_model, FEE_USAGE) == Charge(12_000_000, 0)


def test_token_mode_without_request_fee() -> None:
    assert charge_for(_billing(), BillingMode.TOKEN, price("test/cheap"), FEE_USAGE) == Charge(
        100_000, 0
    )


def test_hybrid_uses_the_models_per_request_price_in_the_accounts_asset() -> None:
    per_request = price("test/per-request")
    credits = _billing(BillingMode.HYBRID)
    money = _billing(BillingMode.HYBRID, request_asset=RequestAsset.MONEY)
    big = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    # Whatever the usage: 3 credits, or $0.02.
    assert charge_for(credits, BillingMode.HYBRID, per_request, big) == Charge(0, 3)
    assert charge_for(money, BillingMode.HYBRID, per_request, big) == Charge(20_000_000, 0)


def test_hybrid_without_a_per_request_price_charges_tokens_and_fee() -> None:
    hybrid = _billing(BillingMode.HYBRID)
    assert charge_for(hybrid, BillingMode.HYBRID, price("test/cheap"), FEE_USAGE) == Charge(
        100_000, 0
    )
    # A provider's per-call fee is part of the token price, not a per-request price.
    assert charge_for(hybrid, BillingMode.HYBRID, price("test/fee-model"), FEE_USAGE) == Charge(
        12_000_000, 0
    )


@pytest.mark.parametrize("price_id", ["test/fee-model", "test/cheap"])
def test_request_mode_charges_the_default_credit_and_no_money(price_id: str) -> None:
    account = _billing(BillingMode.REQUEST)
    assert charge_for(account, BillingMode.REQUEST, price(price_id), FEE_USAGE) == Charge(0, 1)
    assert charge_for(account, BillingMode.REQUEST, price(price_id), TokenUsage()) == Charge(0, 1)


def test_request_mode_in_money_uses_model_price_or_account_default() -> None:
    money = _billing(
        BillingMode.REQUEST, request_asset=RequestAsset.MONEY, default_request_price_nanos=5_000_000
    )
    assert charge_for(money, BillingMode.REQUEST, price("test/per-request"), FEE_USAGE) == Charge(
        20_000_000, 0
    )
    assert charge_for(money, BillingMode.REQUEST, price("test/cheap"), FEE_USAGE) == Charge(
        5_000_000, 0
    )
    # Unpriced models still cost the default per-request price.
    assert charge_for(money, BillingMode.REQUEST, None, FEE_USAGE) == Charge(5_000_000, 0)


def test_batch_discount_and_markup_apply_before_the_one_rounding() -> None:
    mini = price("openai/gpt-4o-mini")
    usage = TokenUsage(input_tokens=13)
    # 13 x 150 nanos = 1950; batch 50% -> 975.
    assert charge_for(_billing(), BillingMode.TOKEN, mini, usage, batch=True) == Charge(975, 0)
    # +20% markup: 975 x 1.2 = 1170.
    marked = _billing(price_adjustment_bps=2000)
    assert charge_for(marked, BillingMode.TOKEN, mini, usage, batch=True) == Charge(1170, 0)
    # 1 token at $0.15/M with 50% off and -0.01% adjustment: 75 x 0.9999 = 74.9925 -> 75.
    odd = _billing(price_adjustment_bps=-1)
    assert charge_for(odd, BillingMode.TOKEN, mini, TokenUsage(1), batch=True) == Charge(75, 0)


def test_unpriced_model_charges_nothing_and_says_so() -> None:
    assert charge_for(_billing(), BillingMode.TOKEN, None, FEE_USAGE) == Charge(0, 0, unpriced=True)


def _account(mode: BillingMode, allow_negative: bool = False) -> Account:
    return Account("acct", "USD", mode, allow_negative, 0)


@pytest.mark.parametrize(
    ("mode", "allow_negative", "balance", "credits", "exhausted"),
    [
        (BillingMode.TOKEN, False, 1, 0, False),
        (BillingMode.TOKEN, False, 0, 100, True),
        (BillingMode.TOKEN, False, -1, 100, True),
        (BillingMode.HYBRID, False, 1, 0, False),
        (BillingMode.HYBRID, False, 0, 5, True),
        (BillingMode.REQUEST, False, 0, 1, False),
        (BillingMode.REQUEST, False, 10**9, 0, True),
        (BillingMode.REQUEST, False, 10**9, -1, True),
        (BillingMode.TOKEN, True, -(10**9), 0, False),
        (BillingMode.REQUEST, True, 0, -5, False),
        (BillingMode.HYBRID, True, 0, 0, False),
    ],
)
def test_is_exhausted(
    mode: BillingMode, allow_negative: bool, balance: int, credits: int, exhausted: bool
) -> None:
    assert is_exhausted(_account(mode, allow_negative), balance, credits) is exhausted


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("acct-1", True),
        ("team/a.b_c:d@e", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("has space", False),
        ("acct\n", False),  # a trailing newline must not pass the pattern
        ("acct\u00e9", False),
    ],
)
def test_is_account_id(value: str, ok: bool) -> None:
    assert is_account_id(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("req-1", True),
        ("a b ~!", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("tab\there", False),
        ("req\n", False),
        ("caf\u00e9", False),
    ],
)
def test_is_request_id(value: str, ok: bool) -> None:
    assert is_request_id(value) is ok


# --- resolution ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "price_id"),
    [
        ("openai", "gpt-4o-mini", "openai/gpt-4o-mini"),
        ("", "gpt-4o-mini", "openai/gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        # dated snapshots bill as their family
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
        ("", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
        # the provider named in the model (OpenRouter spelling)
        ("", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("", "anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        ("", "google/gemini-2.5-pro", "google/gemini-2.5-pro"),
        # case and surrounding blanks do not matter
        ("OpenAI", "GPT-4o-Mini", "openai/gpt-4o-mini"),
        (" openai ", "  gpt-4o-mini\t", "openai/gpt-4o-mini"),
        ("", "OpenAI/GPT-4O-MINI", "openai/gpt-4o-mini"),
        ("", "Claude-Sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
    ],
)
def test_resolve_by_name(provider: str, model: str, price_id: str) -> None:
    assert BOOK.resolve(provider, model, "USD", NOW).price_id == price_id


@pytest.mark.parametrize(
    ("model", "price_id"),
    [
        # the provider prefix and a dated snapshot together
        ("openai/gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("anthropic/claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
    ],
)
def test_resolve_provider_prefix_with_dated_snapshot(model: str, price_id: str) -> None:
    assert BOOK.resolve("", model, "USD", NOW).price_id == price_id


@pytest.mark.parametrize(
    ("provider", "model", "price_id"),
    [
        # aliases
        ("anthropic", "claude-3-5-haiku-latest", "anthropic/claude-3-5-haiku"),
        ("", "CLAUDE-3-5-HAIKU-LATEST", "anthropic/claude-3-5-haiku"),
        ("openai", "gpt-5-codex", "openai/gpt-5"),
        ("", "openai/gpt-5-codex", "openai/gpt-5"),
        ("anthropic", "claude-opus-4-20250514", "anthropic/claude-opus-4-0"),
        # a snapshot the book prices itself wins over its family
        ("openai", "gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13"),
        ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o"),
        ("openai", "gpt-4o-2024-11-20", "openai/gpt-4o"),
        ("openai", "gpt-4.1-2025-04-14", "openai/gpt-4.1"),
    ],
)
def test_resolve_aliases_and_snapshots_in_bundled_book(
    provider: str, model: str, price_id: str
) -> None:
    assert BUNDLED_BOOK.resolve(provider, model, "USD", NOW).price_id == price_id


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("", "no-such-model"),
        ("google", "gpt-4o-mini"),  # wrong provider
        ("", "google/gpt-4o-mini"),  # wrong provider as a prefix
        ("", "gpt-4o-mini-2024"),  # not a dated suffix
        ("", "gpt-4o-mini-20240718x"),
        ("", "gpt-4o"),  # a different model, not in the test book
    ],
)
def test_resolve_unknown_is_price_not_found(provider: str, model: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        BOOK.resolve(provider, model, "USD", NOW)
    assert caught.value.reason == "PRICE_NOT_FOUND"


def test_resolve_currency_mismatch_is_price_not_found() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        BOOK.resolve("openai", "gpt-4o-mini", "EUR", NOW)
    assert caught.value.reason == "PRICE_NOT_FOUND"
    assert caught.value.metadata == {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "currency_code": "EUR",
    }
    assert "EUR" in caught.value.message


def test_resolve_picks_the_price_of_the_currency() -> None:
    usd = make_price(Rates(1, 1), price_id="t/usd")
    eur = make_price(Rates(2, 2), price_id="t/eur", currency_code="EUR")
    book = PriceBook.of([usd, eur])
    assert book.resolve("test", "m", "USD", NOW) is usd
    assert book.resolve("test", "m", "EUR", NOW) is eur


@pytest.mark.parametrize(
    ("at", "version"),
    [
        ("2020-01-01T00:00:00Z", 1),  # effective_time is inclusive
        ("2025-12-31T23:59:59.999999Z", 1),
        ("2026-01-01T00:00:00Z", 2),  # end_time is exclusive; v2 starts there
        ("2030-01-01T00:00:00Z", 2),
    ],
)
def test_resolve_effective_time_boundaries(at: str, version: int) -> None:
    resolved = BOOK.resolve("test", "changing-model", "USD", us(at))
    assert (resolved.price_id, resolved.version) == ("test/changing", version)


def test_resolve_before_first_effective_time_is_not_found() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        BOOK.resolve("test", "changing-model", "USD", us("2019-12-31T23:59:59.999999Z"))
    assert caught.value.reason == "PRICE_NOT_FOUND"
    with pytest.raises(FailedPrecondition):
        BOOK.resolve("openai", "gpt-4o-mini", "USD", us("2024-07-17T23:59:59.999999Z"))
    assert BOOK.resolve("openai", "gpt-4o-mini", "USD", us("2024-07-18T00:00:00Z"))


def test_resolve_after_end_time_without_successor_is_not_found() -> None:
    ended = make_price(Rates(1, 1), end="2025-01-01T00:00:00Z")
    book = PriceBook.of([ended])
    assert book.resolve("test", "m", "USD", us("2024-12-31T23:59:59.999999Z")) is ended
    with pytest.raises(FailedPrecondition):
        book.resolve("test", "m", "USD", us("2025-01-01T00:00:00Z"))


def test_resolve_latest_effective_time_wins() -> None:
    old = make_price(Rates(1, 1), price_id="t/old", version=7, effective="2020-01-01T00:00:00Z")
    new = make_price(Rates(2, 2), price_id="t/new", version=1, effective="2024-01-01T00:00:00Z")
    book = PriceBook.of([new, old])
    assert book.resolve("test", "m", "USD", us("2023-12-31T23:59:59Z")) is old
    # Both are in force; the later effective time wins even with a lower version.
    assert book.resolve("test", "m", "USD", us("2024-01-01T00:00:00Z")) is new


def test_resolve_highest_version_wins_at_equal_effective_time() -> None:
    v2 = make_price(Rates(2, 2), version=2)
    v10 = make_price(Rates(10, 10), version=10)
    v9 = make_price(Rates(9, 9), version=9)
    book = PriceBook.of([v2, v10, v9])
    assert book.resolve("test", "m", "USD", NOW) is v10
    assert len(book) == 3


def test_two_providers_without_provider_is_invalid_argument() -> None:
    groq = make_price(Rates(1, 1), price_id="groq/llama", provider="groq", model="llama-3.3-70b")
    together = make_price(
        Rates(2, 2), price_id="together/llama", provider="together", model="llama-3.3-70b"
    )
    book = PriceBook.of([groq, together])
    with pytest.raises(InvalidArgument) as caught:
        book.resolve("", "llama-3.3-70b", "USD", NOW)
    assert [v.field for v in caught.value.violations] == ["provider"]
    assert "groq, together" in caught.value.violations[0].description
    # Naming the provider, either way, resolves it.
    assert book.resolve("groq", "llama-3.3-70b", "USD", NOW) is groq
    assert book.resolve("TOGETHER", "llama-3.3-70b", "USD", NOW) is together
    assert book.resolve("", "groq/llama-3.3-70b", "USD", NOW) is groq


def test_two_providers_only_one_in_force_is_not_ambiguous() -> None:
    groq = make_price(Rates(1, 1), price_id="groq/l", provider="groq", model="l")
    together = make_price(
        Rates(2, 2),
        price_id="together/l",
        provider="together",
        model="l",
        end="2025-01-01T00:00:00Z",
    )
    book = PriceBook.of([groq, together])
    assert book.resolve("", "l", "USD", NOW) is groq


def test_price_book_len_counts_entries_not_names() -> None:
    aliased = make_price(Rates(1, 1), aliases=("m-latest", "m-alias"))
    assert len(PriceBook.of([aliased])) == 1
    assert len(BOOK) == len(TEST_PRICES) == 9


# --- properties ------------------------------------------------------------------

ALL_PRICES = [*TEST_PRICES, *BUNDLED_PRICES]
RAW_ENTRIES: dict[tuple[str, str, int], dict[str, Any]] = {
    **{("test", e["price_id"], e.get("version", 1)): e for e in TEST_CATALOGUE["prices"]},
    **{("bundled", e["price_id"], e.get("version", 1)): e for e in BUNDLED_CATALOGUE["prices"]},
}
PRICED = [("test", p) for p in TEST_PRICES] + [("bundled", p) for p in BUNDLED_PRICES]

TOKENS_MAX = 1_000_000


@st.composite
def usages(draw: st.DrawFn, tokens_max: int = TOKENS_MAX) -> TokenUsage:
    input_tokens = draw(st.integers(0, tokens_max))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    cache_write_1h = draw(st.integers(0, cache_write))
    output_tokens = draw(st.integers(0, tokens_max))
    reasoning = draw(st.integers(0, output_tokens))
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
    )


def grow(usage: TokenUsage, kind: str, k: int) -> TokenUsage:
    """``k`` more tokens of one kind, with every count that contains it grown too."""
    if kind == "input":
        return replace(usage, input_tokens=usage.input_tokens + k)
    if kind == "cache_read":
        return replace(
            usage,
            input_tokens=usage.input_tokens + k,
            cache_read_tokens=usage.cache_read_tokens + k,
        )
    if kind == "cache_write_5m":
        return replace(
            usage,
            input_tokens=usage.input_tokens + k,
            cache_write_tokens=usage.cache_write_tokens + k,
        )
    if kind == "cache_write_1h":
        return replace(
            usage,
            input_tokens=usage.input_tokens + k,
            cache_write_tokens=usage.cache_write_tokens + k,
            cache_write_1h_tokens=usage.cache_write_1h_tokens + k,
        )
    if kind == "output":
        return replace(usage, output_tokens=usage.output_tokens + k)
    assert kind == "reasoning"
    return replace(
        usage, output_tokens=usage.output_tokens + k, reasoning_tokens=usage.reasoning_tokens + k
    )


@given(
    st.sampled_from(ALL_PRICES),
    usages(),
    st.sampled_from(
        ["input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning"]
    ),
    st.integers(1, 400_000),
)
def test_cost_is_monotone_in_every_token_count(
    p: Price, usage: TokenUsage, kind: str, k: int
) -> None:
    bigger = valid(grow(usage, kind, k))
    assert p.token_cost_nanos(bigger) >= p.token_cost_nanos(valid(usage))
    for mode in BillingMode:
        account = _billing(mode)
        assert (
            charge_for(account, mode, p, bigger).cost_nanos
            >= charge_for(account, mode, p, usage).cost_nanos
        )


def oracle_cost_nanos(entry: dict[str, Any], usage: TokenUsage) -> int:
    """The cost from the catalogue's decimal strings, with Fraction, rounded half up once."""
    tier = entry.get("long_context")
    source = (
        tier if tier is not None and usage.input_tokens > tier["threshold_input_tokens"] else entry
    )

    def rate(key: str, fallback: Fraction) -> Fraction:
        text = source.get(key)
        return fallback if text is None else Fraction(text)

    input_rate = Fraction(source["input_per_million"])
    output_rate = Fraction(source["output_per_million"])
    read_rate = rate("cache_read_per_million", input_rate)
    write_5m_rate = rate("cache_write_5m_per_million", input_rate)
    write_1h_rate = rate("cache_write_1h_per_million", write_5m_rate)
    reasoning_rate = rate("reasoning_per_million", output_rate)
    units = (
        (usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens) * input_rate
        + usage.cache_read_tokens * read_rate
        + (usage.cache_write_tokens - usage.cache_write_1h_tokens) * write_5m_rate
        + usage.cache_write_1h_tokens * write_1h_rate
        + (usage.output_tokens - usage.reasoning_tokens) * output_rate
        + usage.reasoning_tokens * reasoning_rate
    ) / 1_000_000
    nanos = units * 1_000_000_000
    assert nanos >= 0
    return math.floor(nanos + Fraction(1, 2))


@given(st.lists(st.tuples(st.sampled_from(PRICED), usages()), max_size=30))
def test_sum_of_record_costs_matches_fraction_oracle(
    records: list[tuple[tuple[str, Price], TokenUsage]],
) -> None:
    total = 0
    expected_total = 0
    for (catalogue, p), usage in records:
        cost = p.token_cost_nanos(usage)
        expected = oracle_cost_nanos(RAW_ENTRIES[(catalogue, p.price_id, p.version)], usage)
        assert cost == expected
        total += cost
        expected_total += expected
    assert total == expected_total


@given(usages(tokens_max=50), st.integers(1, 3_000_000))
def test_tiny_rates_round_half_up_against_fraction(usage: TokenUsage, rate: int) -> None:
    p = make_price(Rates(input=rate, output=rate + 1, cache_read=rate // 3 or None))
    scaled = p.rates.cost_scaled(usage)
    assert p.token_cost_nanos(usage) == math.floor(Fraction(scaled, 1_000_000) + Fraction(1, 2))


# --- patterns, account overrides, tombstones -----------------------------------


def test_pattern_entries_match_when_no_name_does() -> None:
    pattern = make_price(Rates(1, 1), price_id="cf/all", model="@cf/meta/*", provider="cloudflare")
    narrower = make_price(
        Rates(2, 2), price_id="cf/llama", model="@cf/meta/llama-*", provider="cloudflare"
    )
    exact = make_price(
        Rates(3, 3), price_id="cf/exact", model="@cf/meta/llama-3-8b", provider="cloudflare"
    )
    book = PriceBook.of([pattern, narrower, exact])
    assert book.resolve("", "@cf/meta/llama-3-8b", "USD", NOW).price_id == "cf/exact"
    assert book.resolve("", "@cf/meta/llama-4", "USD", NOW).price_id == "cf/llama"
    assert book.resolve("", "@cf/meta/other", "USD", NOW).price_id == "cf/all"
    assert book.find("", "@cf/qwen/x", "USD", NOW) is None


def test_account_override_wins_for_that_account_only() -> None:
    listed = make_price(Rates(1, 1), price_id="p/m")
    own = make_price(Rates(9, 9), price_id="acme/p/m", account_id="acme")
    book = PriceBook.of([listed, own])
    assert book.resolve("", listed.model, "USD", NOW, "acme").price_id == "acme/p/m"
    assert book.resolve("", listed.model, "USD", NOW, "other").price_id == "p/m"
    assert book.resolve("", listed.model, "USD", NOW).price_id == "p/m"


def test_retired_version_prices_nothing_from_its_time() -> None:
    live = make_price(Rates(1, 1), price_id="p/m")
    tombstone = dataclasses.replace(
        live, version=2, retired=True, effective_time_us=NOW + 1_000_000
    )
    book = PriceBook.of([live, tombstone])
    assert book.resolve("", live.model, "USD", NOW).version == 1
    assert book.find("", live.model, "USD", NOW + 1_000_000) is None
