"""Reservations: authorize before a call, capture at its end, never overspend.

A hold moves no money: it lowers what is *available* (balance minus open
holds) so that concurrent calls cannot all pass a balance check and overdraw
the account. Only captured usage is debited, through the ledger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# A hold lives 5 minutes unless the relay says otherwise, at most a day: long
# enough for the longest stream, short enough that an abandoned one frees its
# money soon.
TTL_DEFAULT_US = 5 * 60 * 1_000_000
TTL_MAX_US = 24 * 3600 * 1_000_000


class ReservationState(enum.Enum):
    OPEN = "OPEN"
    CAPTURED = "CAPTURED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class ExpiryPolicy(enum.Enum):
    """What an expired hold becomes when the relay never reported."""

    RELEASE = "RELEASE"  # the money is available again; nothing is recorded
    CAPTURE = "CAPTURE"  # the held amount is recorded as an ESTIMATED usage record


@dataclass(frozen=True)
class Reservation:
    account_id: str
    reservation_id: str
    request_id: str
    state: ReservationState
    amount_nanos: int
    request_credits: int
    model: str
    provider: str
    api_key_id: str
    input_tokens: int
    output_tokens: int
    price_id: str
    price_version: int
    create_time_us: int
    expire_time_us: int
    resolve_time_us: int | None = None
    record_id: str | None = None


@dataclass(frozen=True)
class Holds:
    """An account's balances with its open holds, as locked in a transaction."""

    balance_nanos: int
    request_credits: int
    held_nanos: int
    held_credits: int

    @property
    def available_nanos(self) -> int:
        return self.balance_nanos - self.held_nanos

    @property
    def available_credits(self) -> int:
        return self.request_credits - self.held_credits

    def covers(self, amount_nanos: int, credits: int) -> bool:
        """Whether a prepaid account can hold this much more."""
        return amount_nanos <= self.available_nanos and credits <= self.available_credits
