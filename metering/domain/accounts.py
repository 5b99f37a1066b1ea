"""Accounts, billing modes and what one record charges."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from metering.domain.pricing import Price
from metering.domain.usage import TokenUsage

ID_LENGTH_MAX = 128
# Account ids appear in logs and URLs; keep them to a safe alphabet.
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
# System ledger accounts start with "@" so that no customer id can collide.
SYSTEM_PREFIX = "@"


class BillingMode(enum.Enum):
    """Which balance a record is debited from."""

    TOKEN = "TOKEN"  # noqa: S105 - a billing mode, not a secret
    REQUEST = "REQUEST"
    HYBRID = "HYBRID"


def is_account_id(value: str) -> bool:
    return bool(_ACCOUNT_ID.fullmatch(value))


def is_request_id(value: str) -> bool:
    """1-128 printable ASCII characters (an idempotency key chosen by the caller)."""
    return 0 < len(value) <= ID_LENGTH_MAX and all(" " <= c <= "~" for c in value)


@dataclass(frozen=True)
class Account:
    account_id: str
    currency_code: str
    billing_mode: BillingMode
    allow_negative_balance: bool
    create_time_us: int


@dataclass(frozen=True)
class Charge:
    """What one record debits: money (nanos) and request credits."""

    cost_nanos: int
    request_credits: int


def charge_for(mode: BillingMode, price: Price, usage: TokenUsage) -> Charge:
    """The charge of one call under a billing mode.

    TOKEN: token prices plus the price's per-request fee. REQUEST: one request
    credit, no money. HYBRID: the per-request fee alone where the model has
    one, token prices otherwise (a per-request price is the operator's
    deliberate choice for that model, so it wins).
    """
    if mode is BillingMode.REQUEST:
        return Charge(cost_nanos=0, request_credits=1)
    if mode is BillingMode.HYBRID and price.request_fee_nanos > 0:
        return Charge(cost_nanos=price.request_fee_nanos, request_credits=0)
    return Charge(
        cost_nanos=price.token_cost_nanos(usage) + price.request_fee_nanos, request_credits=0
    )


def is_exhausted(account: Account, balance_nanos: int, request_credits: int) -> bool:
    """A prepaid account is exhausted when its billing mode's balance is below zero
    (or, for money, not above zero: nothing is left to spend)."""
    if account.allow_negative_balance:
        return False
    if account.billing_mode is BillingMode.REQUEST:
        return request_credits <= 0
    return balance_nanos <= 0
