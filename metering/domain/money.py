"""Exact money: integer nanos (1e-9 of a currency unit) and one rounding rule.

Prices are stored as nanos per million tokens. The cost of a record is the sum
of ``tokens * price_nanos_per_million`` over its token kinds, an exact integer
in units of 1e-15 of a currency unit, divided by one million exactly once per
record with :func:`round_half_up_div`. Rounding per component would let the
sum of rounded parts drift from the rounded sum; rounding once per record
keeps a summary's cost equal to the sum of its records to the nano.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

NANOS_PER_UNIT = 1_000_000_000
TOKENS_PER_MILLION = 1_000_000

# One grant is at most a billion currency units, and a balance stays within
# ±4 billion units: 4e18 nanos, inside int64 (9.2e18) with room for one more
# maximal amount, so no database ever sees an overflowing sum (SQLite would
# silently turn it into a float).
AMOUNT_UNITS_MAX = 1_000_000_000
AMOUNT_NANOS_MAX = AMOUNT_UNITS_MAX * NANOS_PER_UNIT
BALANCE_NANOS_MAX = 4 * AMOUNT_NANOS_MAX

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


def is_currency_code(code: str) -> bool:
    """True for a syntactically valid ISO 4217 alphabetic code."""
    return bool(_CURRENCY_CODE.fullmatch(code))


def round_half_up_div(numerator: int, denominator: int) -> int:
    """Divide exactly, rounding halves away from zero (the one rounding rule).

    ``round_half_up_div(5, 10) == 1``, ``round_half_up_div(-5, 10) == -1``,
    ``round_half_up_div(4, 10) == 0``.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


@dataclass(frozen=True)
class Money:
    """An exact amount: integer nanos of a currency."""

    currency_code: str
    nanos: int

    @staticmethod
    def from_units_nanos(currency_code: str, units: int, nanos: int) -> Money:
        return Money(currency_code, units * NANOS_PER_UNIT + nanos)

    def units_nanos(self) -> tuple[int, int]:
        """Split into google.type.Money's ``(units, nanos)``, both with the amount's sign."""
        units, nanos = divmod(abs(self.nanos), NANOS_PER_UNIT)
        sign = -1 if self.nanos < 0 else 1
        return sign * units, sign * nanos

    def __str__(self) -> str:
        return f"{Decimal(self.nanos) / NANOS_PER_UNIT:f} {self.currency_code}"


def decimal_text(nanos: int) -> str:
    """Nanos as an exact decimal of units with nine places, e.g. 150000 -> "0.000150000"."""
    return f"{Decimal(nanos).scaleb(-9):f}"


def units_nanos_are_consistent(units: int, nanos: int) -> bool:
    """google.type.Money's rule: nanos within ±999,999,999 and the same sign as units."""
    if not -NANOS_PER_UNIT < nanos < NANOS_PER_UNIT:
        return False
    return not ((units > 0 and nanos < 0) or (units < 0 and nanos > 0))


# Catalogue and request values beyond these are mistakes, not prices.
_DECIMAL_DIGITS_MAX = 40
_DECIMAL_EXPONENT_MAX = 30


def parse_decimal_to_nanos(text: str, scale_nanos: int = NANOS_PER_UNIT) -> int:
    """Parse a decimal string such as ``"2.50"`` into an exact integer of ``1/scale_nanos`` units.

    The arithmetic is on the decimal's digits and exponent, never in a
    limited-precision context, so ``"12345678901234567890.123456789"`` is
    exact. Raises ValueError when the value is not a finite decimal, has an
    absurd size, or would need more precision than ``1/scale_nanos``.
    """
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite decimals have an integer exponent
    if len(digits) > _DECIMAL_DIGITS_MAX or abs(exponent) > _DECIMAL_EXPONENT_MAX + len(digits):
        raise ValueError(f"out of range: {text!r}")
    coefficient = int("".join(map(str, digits)) or "0")
    # value = coefficient * 10**exponent; scaled = value * scale_nanos, exactly.
    numerator = coefficient * scale_nanos
    if exponent >= 0:
        scaled: int = numerator * 10**exponent
    else:
        scaled, remainder = divmod(numerator, 10 ** (-exponent))
        if remainder:
            raise ValueError(f"more precise than a nano: {text!r}")
    return -scaled if sign else scaled
