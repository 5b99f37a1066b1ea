"""Exact money: the one rounding rule, google.type.Money splitting, decimal parsing.

Also the double-entry ledger legs, whose amounts are money and must balance.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.domain.ledger import (
    ASSET_REQUEST_CREDITS,
    SYSTEM_GRANTS,
    SYSTEM_REVENUE,
    Entry,
    grant_entries,
    imbalance_by_asset,
    usage_entries,
)
from metering.domain.money import (
    AMOUNT_NANOS_MAX,
    NANOS_PER_UNIT,
    Money,
    is_currency_code,
    parse_decimal_to_nanos,
    round_half_up_div,
    units_nanos_are_consistent,
)

# --- round_half_up_div ------------------------------------------------------------


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        # exact divisions
        (0, 1, 0),
        (0, 1_000_000, 0),
        (10, 5, 2),
        (-10, 5, -2),
        (650_000_000, 1_000_000, 650),
        (-650_000_000, 1_000_000, -650),
        # below a half: towards zero
        (4, 10, 0),
        (-4, 10, 0),
        (14, 10, 1),
        (-14, 10, -1),
        (499_999, 1_000_000, 0),
        (-499_999, 1_000_000, 0),
        # exactly a half: away from zero
        (5, 10, 1),
        (-5, 10, -1),
        (15, 10, 2),
        (-15, 10, -2),
        (25, 10, 3),  # not banker's rounding (which would give 2)
        (-25, 10, -3),
        (1, 2, 1),
        (-1, 2, -1),
        (3, 2, 2),
        (-3, 2, -2),
        (500_000, 1_000_000, 1),
        (-500_000, 1_000_000, -1),
        (1_500_000, 1_000_000, 2),
        # above a half: away from zero
        (6, 10, 1),
        (-6, 10, -1),
        (500_001, 1_000_000, 1),
        (-500_001, 1_000_000, -1),
        (999_999, 1_000_000, 1),
        # odd denominators have no exact half
        (1, 3, 0),
        (2, 3, 1),
        (-1, 3, 0),
        (-2, 3, -1),
        # denominator one is the identity
        (7, 1, 7),
        (-7, 1, -7),
        # big numbers stay exact (no float on the way)
        (10**30 + 5 * 10**5, 10**6, 10**24 + 1),
        (-(10**30 + 5 * 10**5), 10**6, -(10**24 + 1)),
        (10**30 + 5 * 10**5 - 1, 10**6, 10**24),
    ],
)
def test_round_half_up_div_table(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_up_div(numerator, denominator) == expected


@pytest.mark.parametrize("denominator", [0, -1, -10])
def test_round_half_up_div_refuses_non_positive_denominator(denominator: int) -> None:
    with pytest.raises(ValueError, match="denominator"):
        round_half_up_div(1, denominator)


@given(
    st.integers(min_value=-(10**24), max_value=10**24), st.integers(min_value=1, max_value=10**12)
)
def test_round_half_up_div_matches_fraction(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    magnitude = math.floor(abs(exact) + Fraction(1, 2))
    expected = magnitude if exact >= 0 else -magnitude
    assert round_half_up_div(numerator, denominator) == expected


@given(
    st.integers(min_value=-(10**24), max_value=10**24), st.integers(min_value=1, max_value=10**12)
)
def test_round_half_up_div_is_odd(numerator: int, denominator: int) -> None:
    assert round_half_up_div(-numerator, denominator) == -round_half_up_div(numerator, denominator)


# --- Money -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "expected"),
    [
        (0, (0, 0)),
        (1, (0, 1)),
        (-1, (0, -1)),
        (999_999_999, (0, 999_999_999)),
        (-999_999_999, (0, -999_999_999)),
        (1_000_000_000, (1, 0)),
        (-1_000_000_000, (-1, 0)),
        (1_750_000_000, (1, 750_000_000)),
        (-1_750_000_000, (-1, -750_000_000)),  # -1.75: both parts negative, not (-2, 250000000)
        (-250_000_000, (0, -250_000_000)),
        (12_345_000_000_001, (12_345, 1)),
        (-12_345_000_000_001, (-12_345, -1)),
        (AMOUNT_NANOS_MAX, (AMOUNT_NANOS_MAX // NANOS_PER_UNIT, 0)),
    ],
)
def test_money_units_nanos(nanos: int, expected: tuple[int, int]) -> None:
    money = Money("USD", nanos)
    assert money.units_nanos() == expected
    units, part = money.units_nanos()
    assert units_nanos_are_consistent(units, part)
    assert Money.from_units_nanos("USD", units, part) == money


def test_money_from_units_nanos() -> None:
    assert Money.from_units_nanos("EUR", -1, -750_000_000) == Money("EUR", -1_750_000_000)
    assert Money.from_units_nanos("EUR", 2, 5) == Money("EUR", 2_000_000_005)
    assert Money.from_units_nanos("EUR", 0, -1) == Money("EUR", -1)


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (-1_750_000_000, "-1.75 USD"),
        (1, "0.000000001 USD"),
        (0, "0 USD"),
        (2_000_000_000, "2 USD"),
    ],
)
def test_money_str(nanos: int, text: str) -> None:
    assert str(Money("USD", nanos)) == text


@given(st.integers(min_value=-AMOUNT_NANOS_MAX, max_value=AMOUNT_NANOS_MAX))
def test_units_nanos_round_trip(nanos: int) -> None:
    money = Money("USD", nanos)
    units, part = money.units_nanos()
    assert units_nanos_are_consistent(units, part)
    assert Money.from_units_nanos("USD", units, part) == money


@pytest.mark.parametrize(
    ("units", "nanos", "consistent"),
    [
        (0, 0, True),
        (1, 0, True),
        (-1, 0, True),
        (1, 999_999_999, True),
        (-1, -999_999_999, True),
        (0, 999_999_999, True),
        (0, -999_999_999, True),
        (0, 1_000_000_000, False),
        (0, -1_000_000_000, False),
        (5, 1_000_000_000, False),
        (1, -1, False),  # signs differ
        (-1, 1, False),
        (-1, 750_000_000, False),
        (-1, -750_000_000, True),
    ],
)
def test_units_nanos_are_consistent(units: int, nanos: int, consistent: bool) -> None:
    assert units_nanos_are_consistent(units, nanos) is consistent


# --- parse_decimal_to_nanos ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("0.0", 0),
        ("-0", 0),
        ("1", 1_000_000_000),
        ("2.50", 2_500_000_000),
        ("0.15", 150_000_000),
        ("0.075", 75_000_000),
        ("3.75", 3_750_000_000),
        ("0.000000001", 1),
        ("1E-9", 1),
        ("1e3", 1_000_000_000_000),
        ("-0.000000001", -1),
        ("-1.75", -1_750_000_000),
        ("0.123456789000", 123_456_789),  # trailing zeros are not precision
        ("150", 150_000_000_000),
        ("1000000000000", 10**21),
    ],
)
def test_parse_decimal_to_nanos_exact(text: str, nanos: int) -> None:
    assert parse_decimal_to_nanos(text) == nanos


def test_parse_decimal_to_nanos_other_scale() -> None:
    assert parse_decimal_to_nanos("0.5", 10) == 5
    with pytest.raises(ValueError, match="more precise"):
        parse_decimal_to_nanos("0.05", 10)


@pytest.mark.parametrize(
    "text",
    [
        "0.0000000001",
        "0.1234567891",
        "1.0000000001",
        "-0.0000000005",
        "1e-10",
        # 29 significant digits: the default decimal context (28 digits) must not
        # round this to exactly 1 unit on the way.
        "1.0000000000000000000000000001",
        "12345678901234567890.1234567891",
    ],
)
def test_parse_decimal_to_nanos_too_precise(text: str) -> None:
    with pytest.raises(ValueError, match="more precise than a nano"):
        parse_decimal_to_nanos(text)


def test_parse_decimal_to_nanos_many_digits_are_exact() -> None:
    # 30 significant digits, all of them meaningful: no rounding allowed.
    assert parse_decimal_to_nanos("12345678901234567890.123456789") == (
        12_345_678_901_234_567_890_123_456_789
    )


@pytest.mark.parametrize(
    "text",
    ["NaN", "nan", "-NaN", "sNaN", "Infinity", "inf", "-Infinity", "-inf"],
)
def test_parse_decimal_to_nanos_not_finite(text: str) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        parse_decimal_to_nanos(text)


@pytest.mark.parametrize("text", ["", "abc", "1,5", "1.2.3", "$1", "0x10", "1 000"])
def test_parse_decimal_to_nanos_not_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal number"):
        parse_decimal_to_nanos(text)


@pytest.mark.parametrize("text", ["1e999999", "1e1000000000", "-1e999999"])
def test_parse_decimal_to_nanos_huge_exponent_is_a_value_error(text: str) -> None:
    # Must be a ValueError (the documented contract, which the catalogue relies
    # on to report the field), never decimal.Overflow leaking out.
    with pytest.raises(ValueError):
        parse_decimal_to_nanos(text)


@given(st.integers(min_value=-(10**21), max_value=10**21))
def test_parse_decimal_to_nanos_round_trips_str(nanos: int) -> None:
    text = str(Money("USD", nanos)).split()[0]
    assert parse_decimal_to_nanos(text) == nanos


# --- currency codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("USD", True),
        ("EUR", True),
        ("JPY", True),
        ("usd", False),
        ("US", False),
        ("USDT", False),
        ("", False),
        ("U1D", False),
        ("USD\n", False),
    ],
)
def test_is_currency_code(code: str, valid: bool) -> None:
    assert is_currency_code(code) is valid


# --- ledger legs -----------------------------------------------------------------------


def test_usage_entries_balance_per_asset() -> None:
    entries = usage_entries("acct-1", "USD", 435_000, 1)
    assert entries == [
        Entry("acct-1", "USD", -435_000),
        Entry(SYSTEM_REVENUE, "USD", 435_000),
        Entry("acct-1", ASSET_REQUEST_CREDITS, -1),
        Entry(SYSTEM_REVENUE, ASSET_REQUEST_CREDITS, 1),
    ]
    assert imbalance_by_asset(entries) == {}


def test_usage_entries_omit_zero_legs() -> None:
    assert usage_entries("acct-1", "USD", 0, 0) == []
    assert usage_entries("acct-1", "USD", 0, 1) == [
        Entry("acct-1", ASSET_REQUEST_CREDITS, -1),
        Entry(SYSTEM_REVENUE, ASSET_REQUEST_CREDITS, 1),
    ]
    assert usage_entries("acct-1", "USD", 7, 0) == [
        Entry("acct-1", "USD", -7),
        Entry(SYSTEM_REVENUE, "USD", 7),
    ]


def test_grant_entries_balance_per_asset() -> None:
    entries = grant_entries("acct-1", "EUR", 5 * NANOS_PER_UNIT, 100)
    assert entries == [
        Entry("acct-1", "EUR", 5 * NANOS_PER_UNIT),
        Entry(SYSTEM_GRANTS, "EUR", -5 * NANOS_PER_UNIT),
        Entry("acct-1", ASSET_REQUEST_CREDITS, 100),
        Entry(SYSTEM_GRANTS, ASSET_REQUEST_CREDITS, -100),
    ]
    assert imbalance_by_asset(entries) == {}
    # A negative grant (a correction) balances too.
    assert imbalance_by_asset(grant_entries("acct-1", "EUR", -3, -2)) == {}


def test_imbalance_by_asset_reports_only_unbalanced_assets() -> None:
    entries = [
        Entry("a", "USD", -10),
        Entry(SYSTEM_REVENUE, "USD", 10),
        Entry("a", "EUR", -10),
        Entry(SYSTEM_REVENUE, "EUR", 9),
        Entry("a", ASSET_REQUEST_CREDITS, 1),
    ]
    assert imbalance_by_asset(entries) == {"EUR": -1, ASSET_REQUEST_CREDITS: 1}
    assert imbalance_by_asset([]) == {}


@given(
    st.integers(min_value=-AMOUNT_NANOS_MAX, max_value=AMOUNT_NANOS_MAX),
    st.integers(min_value=-(10**9), max_value=10**9),
)
def test_ledger_legs_always_balance(amount: int, credits: int) -> None:
    assert imbalance_by_asset(usage_entries("a", "USD", amount, credits)) == {}
    assert imbalance_by_asset(grant_entries("a", "USD", amount, credits)) == {}
