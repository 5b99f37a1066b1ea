"""Double-entry ledger rules.

Every change of a balance is a transaction of entries whose amounts sum to
zero per asset: a usage debit of a customer is balanced by a credit to the
system revenue account, a grant by a debit of the system grants account.
Entries are never updated or deleted; a correction is a new transaction
linked to the one it corrects. A customer's balance is the sum of its
entries; system balances are derived the same way when needed (they are not
kept as rows, so that no single row is written by every transaction).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

SYSTEM_REVENUE = "@revenue"
SYSTEM_GRANTS = "@grants"
# Request credits are an asset of their own beside each currency.
ASSET_REQUEST_CREDITS = "REQUEST_CREDITS"


class TransactionKind(enum.Enum):
    GRANT = "GRANT"
    USAGE = "USAGE"
    # Corrects an earlier transaction by the difference; names it.
    CORRECTION = "CORRECTION"


@dataclass(frozen=True)
class Entry:
    """One leg of a transaction: ``amount`` of ``asset`` added to ``ledger_account``."""

    ledger_account: str
    asset: str
    amount: int


def usage_entries(
    account_id: str, currency_code: str, cost_nanos: int, credits: int
) -> list[Entry]:
    """The legs of a usage debit; zero legs are omitted, but a transaction always exists."""
    entries: list[Entry] = []
    if cost_nanos:
        entries += [
            Entry(account_id, currency_code, -cost_nanos),
            Entry(SYSTEM_REVENUE, currency_code, cost_nanos),
        ]
    if credits:
        entries += [
            Entry(account_id, ASSET_REQUEST_CREDITS, -credits),
            Entry(SYSTEM_REVENUE, ASSET_REQUEST_CREDITS, credits),
        ]
    return entries


def grant_entries(
    account_id: str, currency_code: str, amount_nanos: int, credits: int
) -> list[Entry]:
    """The legs of a grant of money and/or request credits."""
    entries: list[Entry] = []
    if amount_nanos:
        entries += [
            Entry(account_id, currency_code, amount_nanos),
            Entry(SYSTEM_GRANTS, currency_code, -amount_nanos),
        ]
    if credits:
        entries += [
            Entry(account_id, ASSET_REQUEST_CREDITS, credits),
            Entry(SYSTEM_GRANTS, ASSET_REQUEST_CREDITS, -credits),
        ]
    return entries


def imbalance_by_asset(entries: Iterable[Entry]) -> dict[str, int]:
    """Per asset, the sum of the amounts; empty when the entries balance."""
    sums: dict[str, int] = defaultdict(int)
    for entry in entries:
        sums[entry.asset] += entry.amount
    return {asset: total for asset, total in sums.items() if total != 0}
