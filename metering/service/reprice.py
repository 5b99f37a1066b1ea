"""Repricing: recompute recorded usage with the prices now in force at each record's time.

Nothing recorded is changed. Each difference becomes an ADJUSTMENT record
and a CORRECTION ledger transaction linked to the original, so balances and
summaries follow while history stays as it was. The adjustment's idempotency
key names the record and the new charge, so running the same repricing twice
adds nothing the second time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from metering.domain.accounts import Account, BillingMode, charge_for, is_exhausted
from metering.domain.errors import FailedPrecondition, MeteringError, Violations
from metering.domain.ledger import TransactionKind, usage_entries
from metering.domain.pricing import PriceBook
from metering.domain.records import Net, UsageRecord, net_of
from metering.domain.usage import TokenUsage
from metering.service import validation as val
from metering.service.balances import checked_balances
from metering.service.handlers import SUMMARY_RANGE_MAX_US
from metering.service.ports import Clock, Database

PAGE_RECORDS = 500
_OP_REPRICE = "Reprice"


@dataclass(frozen=True)
class Change:
    account_id: str
    record_id: str
    model: str
    event_time_us: int
    old_cost_nanos: int
    new_cost_nanos: int
    old_credits: int
    new_credits: int
    old_price_id: str
    old_price_version: int
    new_price_id: str
    new_price_version: int

    @property
    def difference_nanos(self) -> int:
        return self.new_cost_nanos - self.old_cost_nanos


@dataclass
class RepriceReport:
    records_checked: int = 0
    still_unpriced: int = 0
    changes: list[Change] = field(default_factory=list)
    applied: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def difference_nanos(self) -> int:
        return sum(c.difference_nanos for c in self.changes)


class Repricer:
    """Finds and applies the differences between recorded and current charges."""

    def __init__(self, db: Database, prices: Callable[[], PriceBook], clock: Clock) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock

    def reprice(
        self, start_us: int, end_us: int, account_id: str | None, apply: bool
    ) -> RepriceReport:
        """Compare every record in [start, end) with its current charge; apply when asked."""
        v = Violations()
        val.check_time(v, "start_time", start_us)
        if end_us <= start_us:
            v.add("end_time", "end_time must be after start_time")
        elif end_us - start_us > SUMMARY_RANGE_MAX_US:
            v.add("end_time", "the range must be at most 400 days")
        if account_id is not None:
            val.check_account_id(v, account_id)
        v.raise_if_any()
        report = RepriceReport()
        after: tuple[int, str, str] = (start_us - 1, "", "")
        accounts: dict[str, Account] = {}
        book = self._prices()
        while True:
            with self._db.read() as store:
                page = store.usage_page(start_us, end_us, account_id, after, PAGE_RECORDS)
                by_account: dict[str, list[UsageRecord]] = {}
                for record in page:
                    by_account.setdefault(record.account_id, []).append(record)
                nets: dict[tuple[str, str], Net] = {}
                for owner, records in by_account.items():
                    if owner not in accounts:
                        found = store.get_account(owner)
                        if found is not None:
                            accounts[owner] = found
                    adjustments = store.adjustments_of(owner, [r.record_id for r in records])
                    for record in records:
                        nets[(owner, record.record_id)] = net_of(
                            record, adjustments.get(record.record_id, [])
                        )
            if not page:
                break
            for record in page:
                report.records_checked += 1
                change = self._change(record, accounts.get(record.account_id), book, nets, report)
                if change is None:
                    continue
                report.changes.append(change)
                if apply:
                    outcome = self._apply(record, change)
                    if isinstance(outcome, MeteringError):
                        report.problems.append(f"{record.account_id}/{record.record_id}: {outcome}")
                    elif outcome:
                        report.applied += 1
            last = page[-1]
            after = (last.event_time_us, last.account_id, last.record_id)
        return report

    def _change(
        self,
        record: UsageRecord,
        account: Account | None,
        book: PriceBook,
        nets: dict[tuple[str, str], Net],
        report: RepriceReport,
    ) -> Change | None:
        if account is None:
            return None
        mode = BillingMode(record.billing_mode)
        price = book.find(
            record.provider,
            record.model,
            record.currency_code,
            record.event_time_us,
            record.account_id,
        )
        net = nets[(record.account_id, record.record_id)]
        # Price what the call used as corrected by later reports, not the first figure.
        charge = charge_for(account, mode, price, net.usage, batch=net.batch)
        if charge.unpriced:
            report.still_unpriced += 1
            return None
        old_cost, old_credits = net.cost_nanos, net.request_credits
        if (charge.cost_nanos, charge.request_credits) == (old_cost, old_credits):
            return None
        return Change(
            account_id=record.account_id,
            record_id=record.record_id,
            model=record.model,
            event_time_us=record.event_time_us,
            old_cost_nanos=old_cost,
            new_cost_nanos=charge.cost_nanos,
            old_credits=old_credits,
            new_credits=charge.request_credits,
            old_price_id=record.price_id,
            old_price_version=record.price_version,
            new_price_id=price.price_id if price else "",
            new_price_version=price.version if price else 0,
        )

    def _apply(self, record: UsageRecord, change: Change) -> bool | MeteringError:
        """Write one adjustment; False when an identical one was already written."""
        with self._db.write() as store:
            account = store.get_account(record.account_id, for_update=True)
            if account is None:
                return False
            # Re-read the adjustments under the lock: another run may have adjusted meanwhile.
            adjustments = store.adjustments_of(record.account_id, [record.record_id]).get(
                record.record_id, []
            )
            # The key names the correction's place in the record's history and its target:
            # two runs taking the same step write it once, and a price that changes back
            # later is a new step, not a replay of an old one.
            request_id = (
                f"reprice:{record.record_id}:{len(adjustments)}:"
                f"{change.new_cost_nanos}:{change.new_credits}"
            )
            if store.get_stored_result(record.account_id, request_id) is not None:
                return False
            net = net_of(record, adjustments)
            delta_cost = change.new_cost_nanos - net.cost_nanos
            delta_credits = change.new_credits - net.request_credits
            if not delta_cost and not delta_credits:
                return False
            try:
                balance, credits = checked_balances(
                    store, record.account_id, -delta_cost, -delta_credits
                )
            except FailedPrecondition as exc:
                return exc
            now = self._clock.now_us()
            transaction_id, adjustment_id = uuid.uuid4().hex, uuid.uuid4().hex
            store.append_transaction(
                account_id=record.account_id,
                transaction_id=transaction_id,
                kind=TransactionKind.CORRECTION,
                request_id=request_id,
                reason=(
                    f"reprice {change.old_price_id or 'unpriced'} v{change.old_price_version} "
                    f"-> {change.new_price_id or 'default'} v{change.new_price_version}"
                ),
                now_us=now,
                entries=usage_entries(
                    record.account_id, record.currency_code, delta_cost, delta_credits
                ),
                corrects_transaction_id=record.transaction_id,
            )
            store.insert_usage_record(
                replace(
                    record,
                    record_id=adjustment_id,
                    request_id=request_id,
                    transaction_id=transaction_id,
                    record_time_us=now,
                    usage=TokenUsage(),
                    # Counted where the call counts now (CORRECTED once superseded).
                    usage_source=net.source,
                    batch=net.batch,
                    cost_nanos=delta_cost,
                    request_credits=delta_credits,
                    price_id=change.new_price_id,
                    price_version=change.new_price_version,
                    record_kind="ADJUSTMENT",
                    request_count=0,
                    corrects_record_id=record.record_id,
                    unpriced=False,
                )
            )
            store.set_balances(record.account_id, balance, credits)
            result = {
                "record_id": adjustment_id,
                "corrects_record_id": record.record_id,
                "difference_nanos": delta_cost,
                "difference_credits": delta_credits,
                "balance_nanos": balance,
                "exhausted": is_exhausted(account, balance, credits),
            }
            store.store_result(
                record.account_id,
                request_id,
                _OP_REPRICE,
                request_id,
                json.dumps(result),
                now,
            )
        return True
