"""Balance arithmetic shared by every write path: the supported range, and key conflicts."""

from __future__ import annotations

from metering.domain.errors import AlreadyExists, FailedPrecondition
from metering.domain.money import AMOUNT_UNITS_MAX, BALANCE_NANOS_MAX
from metering.service.ports import Store

# Request credits are bounded like money, for the same int64 reason.
REQUEST_CREDITS_MAX = AMOUNT_UNITS_MAX
REQUEST_CREDITS_BALANCE_MAX = 4 * REQUEST_CREDITS_MAX


def in_range(account_id: str, balance: int, credits: int) -> tuple[int, int]:
    if abs(balance) > BALANCE_NANOS_MAX or abs(credits) > REQUEST_CREDITS_BALANCE_MAX:
        raise FailedPrecondition(
            "BALANCE_OUT_OF_RANGE",
            f"account {account_id!r} would leave the supported balance range "
            f"(±{BALANCE_NANOS_MAX // 1_000_000_000} units, "
            f"±{REQUEST_CREDITS_BALANCE_MAX} credits)",
            {"account_id": account_id},
        )
    return balance, credits


def checked_balances(
    store: Store, account_id: str, delta_nanos: int, delta_credits: int
) -> tuple[int, int]:
    """The balances after the deltas, refused when they would leave the supported range.

    The caller holds the account's row lock, so the values cannot change
    before it writes them back.
    """
    balance, credits = store.get_balances(account_id)
    return in_range(account_id, balance + delta_nanos, credits + delta_credits)


def request_id_conflict(request_id: str) -> AlreadyExists:
    return AlreadyExists(
        "REQUEST_ID_CONFLICT",
        f"request_id {request_id!r} was already used with a different payload",
        {"request_id": request_id},
    )
