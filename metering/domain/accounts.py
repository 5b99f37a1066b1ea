"""Accounts, billing modes and what one record charges."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from metering.domain.money import TOKENS_PER_MILLION, round_half_up_div
from metering.domain.pricing import Price
from metering.domain.reservations import ExpiryPolicy
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


class UnpricedPolicy(enum.Enum):
    """What RecordUsage does for a model without a price."""

    REJECT = "REJECT"  # FAILED_PRECONDITION PRICE_NOT_FOUND, nothing written
    RECORD = "RECORD"  # record at zero cost, flagged unpriced, for later repricing


class RequestAsset(enum.Enum):
    """What a per-request price is debited from."""

    CREDITS = "CREDITS"
    MONEY = "MONEY"


# Markups and discounts are basis points on the list price: +2000 is a 20%
# markup, -1000 a 10% discount. Bounded so no one bills 100x by a typo.
PRICE_ADJUSTMENT_BPS_MIN = -10_000
PRICE_ADJUSTMENT_BPS_MAX = 100_000
BPS = 10_000


@dataclass(frozen=True)
class Account:
    account_id: str
    currency_code: str
    billing_mode: BillingMode
    allow_negative_balance: bool
    create_time_us: int
    unpriced_policy: UnpricedPolicy = UnpricedPolicy.REJECT
    price_adjustment_bps: int = 0
    request_asset: RequestAsset = RequestAsset.CREDITS
    default_request_price_nanos: int = 0
    default_request_credits: int = 1
    reservation_expiry_policy: ExpiryPolicy = ExpiryPolicy.RELEASE
    # The IANA zone of daily and monthly budget periods.
    time_zone: str = "UTC"
    # The tenant owning the account (None: no tenant); fixed at creation (0004).
    tenant_id: str | None = None


@dataclass(frozen=True)
class Charge:
    """What one record debits: money (nanos) and request credits."""

    cost_nanos: int
    request_credits: int
    unpriced: bool = False


def has_request_price(account: Account, price: Price | None) -> bool:
    """Whether the model has its own per-request price in the asset the account pays with."""
    if price is None:
        return False
    if account.request_asset is RequestAsset.MONEY:
        return price.request_price_nanos is not None
    return price.request_credits is not None


def _adjusted(account: Account, scaled: int, denominator: int) -> int:
    """Apply the account's markup or discount and round once."""
    return round_half_up_div(scaled * (BPS + account.price_adjustment_bps), denominator * BPS)


def charge_for(
    account: Account,
    mode: BillingMode,
    price: Price | None,
    usage: TokenUsage,
    *,
    batch: bool = False,
) -> Charge:
    """The charge of one call.

    TOKEN: token prices (long-context tier, cache and reasoning rates) plus
    the price's per-request fee, less the batch discount for batch calls.
    REQUEST: the model's per-request price in the account's request asset
    (credits or money), else the account's default. HYBRID: the REQUEST rule
    where the model has its own per-request price, the TOKEN rule otherwise.
    The account's markup or discount applies to money, never to credits. The
    whole money amount is rounded once (half away from zero). ``price`` None
    (an unpriced model) charges nothing and says so, except a REQUEST default.
    """
    if mode is BillingMode.REQUEST or (
        mode is BillingMode.HYBRID and has_request_price(account, price)
    ):
        if account.request_asset is RequestAsset.CREDITS:
            credits = account.default_request_credits
            if price is not None and price.request_credits is not None:
                credits = price.request_credits
            return Charge(cost_nanos=0, request_credits=credits)
        nanos = account.default_request_price_nanos
        if price is not None and price.request_price_nanos is not None:
            nanos = price.request_price_nanos
        return Charge(cost_nanos=_adjusted(account, nanos, 1), request_credits=0)
    if price is None:
        return Charge(cost_nanos=0, request_credits=0, unpriced=True)
    scaled = (
        price.rates_for(usage).cost_scaled(usage) + price.request_fee_nanos * TOKENS_PER_MILLION
    )
    discount_bps = price.batch_discount_bps if batch else 0
    return Charge(
        cost_nanos=_adjusted(account, scaled * (BPS - discount_bps), TOKENS_PER_MILLION * BPS),
        request_credits=0,
    )


def is_exhausted(account: Account, balance_nanos: int, request_credits: int) -> bool:
    """A prepaid account is exhausted when the balance it pays from has nothing left."""
    if account.allow_negative_balance:
        return False
    if (
        account.billing_mode is BillingMode.REQUEST
        and account.request_asset is RequestAsset.CREDITS
    ):
        return request_credits <= 0
    return balance_nanos <= 0
