"""In-memory twins of the storage adapter, for service-layer tests without a database.

A transaction works on a copy of the state and publishes it on commit, so a
handler that raises leaves nothing behind, as with a real database.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from metering.domain.accounts import Account, BillingMode
from metering.domain.budgets import Budget, measure
from metering.domain.exports import RecordView, share_reaches
from metering.domain.ledger import Entry, TransactionKind
from metering.domain.missing import MissingUsagePolicy
from metering.domain.reconcile import LocalTally
from metering.domain.records import NewResult, NewTransaction, UsageRecord
from metering.domain.reservations import Reservation, ReservationState
from metering.domain.summary import Aggregate, SummaryFilter
from metering.domain.usage import TOKEN_FIELDS, TokenUsage, UsageSource


@dataclass(frozen=True)
class FakeStoredResult:
    operation: str
    payload_sha256: str
    result_json: str


@dataclass
class FakeState:
    accounts: dict[str, Account] = field(default_factory=dict)
    balances: dict[str, tuple[int, int]] = field(default_factory=dict)
    results: dict[tuple[str, str], FakeStoredResult] = field(default_factory=dict)
    transactions: list[tuple[str, str, TransactionKind, list[Entry]]] = field(default_factory=list)
    records: list[UsageRecord] = field(default_factory=list)
    prices: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    api_keys: dict[tuple[str, str], BillingMode | None] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    holds: dict[str, tuple[int, int]] = field(default_factory=dict)
    budgets: dict[str, dict[str, Budget]] = field(default_factory=dict)
    budget_events: dict[tuple[str, str, int, int], dict[str, Any]] = field(default_factory=dict)
    reservations: dict[tuple[str, str], Reservation] = field(default_factory=dict)
    missing_policies: list[MissingUsagePolicy] = field(default_factory=list)


class FakeStore:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def get_account(self, account_id: str, *, for_update: bool = False) -> Account | None:
        return self.state.accounts.get(account_id)

    def get_accounts(self, account_ids: list[str]) -> dict[str, Account]:
        accounts = self.state.accounts
        return {
            account_id: accounts[account_id] for account_id in account_ids if account_id in accounts
        }

    def insert_account(self, account: Account) -> None:
        assert account.account_id not in self.state.accounts
        self.state.accounts[account.account_id] = account
        self.state.balances[account.account_id] = (0, 0)

    def update_account_settings(self, account: Account) -> None:
        self.state.accounts[account.account_id] = account

    def get_api_key_mode(self, account_id: str, api_key_id: str) -> BillingMode | None:
        return self.state.api_keys.get((account_id, api_key_id))

    def get_api_key_modes(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], BillingMode]:
        return {pair: mode for pair in pairs if (mode := self.state.api_keys.get(pair)) is not None}

    def set_api_key_mode(
        self, account_id: str, api_key_id: str, mode: BillingMode | None, now_us: int
    ) -> None:
        self.state.api_keys[(account_id, api_key_id)] = mode

    def lock_accounts(self, account_ids: list[str]) -> dict[str, tuple[Account, int, int]]:
        return {
            account_id: (self.state.accounts[account_id], *self.state.balances[account_id])
            for account_id in account_ids
            if account_id in self.state.accounts
        }

    def set_balances_many(self, balances: list[tuple[str, int, int]]) -> None:
        for account_id, balance, credits in balances:
            self.state.balances[account_id] = (balance, credits)

    def get_stored_results(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], FakeStoredResult]:
        return {key: self.state.results[key] for key in keys if key in self.state.results}

    def append_transactions(self, transactions: list[NewTransaction]) -> None:
        for tx in transactions:
            self.state.transactions.append(
                (tx.account_id, tx.transaction_id, tx.kind, list(tx.entries))
            )

    def insert_usage_records(self, records: list[UsageRecord]) -> None:
        self.state.records.extend(records)

    def store_results(self, results: list[NewResult]) -> None:
        for r in results:
            key = (r.account_id, r.request_id)
            assert key not in self.state.results
            self.state.results[key] = FakeStoredResult(r.operation, r.payload_sha256, r.result_json)

    def budgets_for(self, account_id: str) -> list[Budget]:
        return list(self.state.budgets.get(account_id, {}).values())

    def budgets_for_accounts(self, account_ids: list[str]) -> dict[str, list[Budget]]:
        return {a: self.budgets_for(a) for a in account_ids if self.state.budgets.get(a)}

    def put_budget(self, budget: Budget, now_us: int) -> None:
        self.state.budgets.setdefault(budget.account_id, {})[budget.budget_id] = budget

    def delete_budget(self, account_id: str, budget_id: str) -> bool:
        return self.state.budgets.get(account_id, {}).pop(budget_id, None) is not None

    def budget_usage(self, budget: Budget, start_us: int) -> int:
        total = 0
        for r in self.state.records:
            if r.account_id != budget.account_id or r.event_time_us < start_us:
                continue
            if budget.api_key_id and r.api_key_id != budget.api_key_id:
                continue
            if budget.model and r.model != budget.model:
                continue
            total += measure(budget.metric, r.cost_nanos, r.usage, r.request_count)
        return total

    def add_budget_event(
        self,
        account_id: str,
        event_id: str,
        budget_id: str,
        period_start_us: int,
        threshold_percent: int,
        used: int,
        limit_value: int,
        now_us: int,
    ) -> bool:
        key = (account_id, budget_id, period_start_us, threshold_percent)
        if key in self.state.budget_events:
            return False
        self.state.budget_events[key] = {"event_id": event_id, "used_value": used}
        return True

    def budget_events(
        self, after: tuple[int, str], account_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        return []

    def get_holds(self, account_id: str) -> tuple[int, int]:
        return self.state.holds.get(account_id, (0, 0))

    def set_holds(self, account_id: str, held_nanos: int, held_credits: int) -> None:
        self.state.holds[account_id] = (held_nanos, held_credits)

    def insert_reservation(self, reservation: Reservation) -> None:
        self.state.reservations[(reservation.account_id, reservation.reservation_id)] = reservation

    def get_reservation(self, account_id: str, reservation_id: str) -> Reservation | None:
        return self.state.reservations.get((account_id, reservation_id))

    def resolve_reservation(
        self,
        account_id: str,
        reservation_id: str,
        state: ReservationState,
        now_us: int,
        record_id: str | None,
    ) -> bool:
        key = (account_id, reservation_id)
        current = self.state.reservations.get(key)
        if current is None or current.state is not ReservationState.OPEN:
            return False
        self.state.reservations[key] = dataclasses.replace(
            current, state=state, resolve_time_us=now_us, record_id=record_id
        )
        return True

    def due_reservations(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        due = sorted(
            (r.expire_time_us, r.account_id, r.reservation_id)
            for r in self.state.reservations.values()
            if r.state is ReservationState.OPEN and r.expire_time_us <= now_us
        )
        return [(account_id, reservation_id) for _, account_id, reservation_id in due[:limit]]

    def get_usage_record_by_request(self, account_id: str, request_id: str) -> UsageRecord | None:
        return next(
            (
                r
                for r in self.state.records
                if r.account_id == account_id and r.request_id == request_id
            ),
            None,
        )

    def missing_usage_policies(self, account_id: str | None = None) -> list[MissingUsagePolicy]:
        return [
            p
            for p in sorted(self.state.missing_policies, key=lambda p: p.scope)
            if account_id is None or p.account_id in ("", account_id)
        ]

    def put_missing_usage_policy(self, policy: MissingUsagePolicy, now_us: int) -> None:
        self.delete_missing_usage_policy(*policy.scope)
        self.state.missing_policies.append(policy)

    def delete_missing_usage_policy(self, account_id: str, provider: str, model: str) -> bool:
        before = len(self.state.missing_policies)
        self.state.missing_policies[:] = [
            p for p in self.state.missing_policies if p.scope != (account_id, provider, model)
        ]
        return len(self.state.missing_policies) != before

    def usage_tallies(
        self, start_us: int, end_us: int, provider: str, account_id: str | None
    ) -> list[LocalTally]:
        day_us = 86_400_000_000
        sums: dict[tuple[int, str, str, str, str], list[Any]] = {}
        for r in self.state.records:
            if not start_us <= r.event_time_us < end_us:
                continue
            if (provider and r.provider != provider) or account_id not in (None, r.account_id):
                continue
            key = (r.event_time_us // day_us, r.model, r.api_key_id, r.account_id, r.currency_code)
            total = sums.setdefault(key, [0, TokenUsage(), 0])
            total[0] += r.request_count
            total[1] = TokenUsage(
                **{name: getattr(total[1], name) + getattr(r.usage, name) for name in TOKEN_FIELDS}
            )
            total[2] += r.cost_nanos
        return [
            LocalTally(day, model, key_id, owner, currency, count, usage, cost)
            for (day, model, key_id, owner, currency), (count, usage, cost) in sorted(sums.items())
        ]

    def calls_between(
        self, start_us: int, end_us: int, provider: str, account_id: str | None, limit: int
    ) -> list[UsageRecord]:
        calls = [
            r
            for r in self.state.records
            if start_us <= r.event_time_us < end_us
            and r.record_kind == "USAGE"
            and (not provider or r.provider == provider)
            and account_id in (None, r.account_id)
        ]
        return sorted(calls, key=lambda r: (r.event_time_us, r.account_id, r.record_id))[:limit]

    def accounts_of_keys(self, api_key_ids: list[str]) -> dict[str, str]:
        counts: dict[tuple[str, str], int] = {}
        for r in self.state.records:
            if r.api_key_id in api_key_ids:
                counts[(r.api_key_id, r.account_id)] = (
                    counts.get((r.api_key_id, r.account_id), 0) + 1
                )
        best: dict[str, tuple[int, str]] = {}
        for (key_id, owner), calls in counts.items():
            if key_id not in best or (calls, owner) > best[key_id]:
                best[key_id] = (calls, owner)
        return {key_id: owner for key_id, (_, owner) in best.items()}

    def get_usage_record(self, account_id: str, record_id: str) -> UsageRecord | None:
        return next(
            (
                r
                for r in self.state.records
                if r.account_id == account_id and r.record_id == record_id
            ),
            None,
        )

    def get_balances(self, account_id: str) -> tuple[int, int]:
        return self.state.balances[account_id]

    def set_balances(self, account_id: str, balance_nanos: int, request_credits: int) -> None:
        self.state.balances[account_id] = (balance_nanos, request_credits)

    def get_stored_result(self, account_id: str, request_id: str) -> FakeStoredResult | None:
        return self.state.results.get((account_id, request_id))

    def store_result(
        self,
        account_id: str,
        request_id: str,
        operation: str,
        payload_sha256: str,
        result_json: str,
        now_us: int,
    ) -> None:
        key = (account_id, request_id)
        assert key not in self.state.results
        self.state.results[key] = FakeStoredResult(operation, payload_sha256, result_json)

    def append_transaction(
        self,
        *,
        account_id: str,
        transaction_id: str,
        kind: TransactionKind,
        request_id: str,
        reason: str,
        now_us: int,
        entries: list[Entry],
        corrects_transaction_id: str | None = None,
    ) -> None:
        self.state.transactions.append((account_id, transaction_id, kind, list(entries)))

    def insert_usage_record(self, record: UsageRecord) -> None:
        self.state.records.append(record)

    def summarize(self, flt: SummaryFilter) -> list[Aggregate]:
        groups: dict[tuple[int, tuple[str, ...], str], Aggregate] = {}
        for record in self.state.records:
            if not flt.start_us <= record.event_time_us < flt.end_us:
                continue
            if flt.account_id is not None and record.account_id != flt.account_id:
                continue
            if flt.currency_code is not None and record.currency_code != flt.currency_code:
                continue
            if flt.usage_sources and record.usage_source.value not in flt.usage_sources:
                continue
            # Any instant inside the record's bucket will do: the service regroups.
            start = record.event_time_us if flt.segments else flt.start_us
            values = {
                "model": record.model,
                "provider": record.provider,
                "api_key_id": record.api_key_id,
                "service": record.service,
                "usage_source": record.usage_source.value,
                "account_id": record.account_id,
            }
            keys = tuple(values[key.value] for key in flt.group_by)
            usage = record.usage
            item = Aggregate(
                start_us=start,
                keys=keys,
                currency_code=record.currency_code,
                request_count=record.request_count,
                unpriced_request_count=record.request_count if record.unpriced else 0,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                cache_write_1h_tokens=usage.cache_write_1h_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_nanos=record.cost_nanos,
                request_credits=record.request_credits,
            )
            if record.usage_source is UsageSource.ESTIMATED:
                item.estimated_request_count = record.request_count
                item.estimated_cost_nanos = record.cost_nanos
            if record.usage_source is UsageSource.MISSING:
                item.missing_request_count = record.request_count
                item.missing_cost_nanos = record.cost_nanos
            key = (start, keys, record.currency_code)
            if key in groups:
                groups[key].add(item)
            else:
                groups[key] = item
        return list(groups.values())

    def price_rows(self) -> list[tuple[str, int, str, str]]:
        return [(pid, ver, sha, text) for (pid, ver), (sha, text) in self.state.prices.items()]

    def insert_price(
        self,
        *,
        price_id: str,
        version: int,
        provider: str,
        model: str,
        currency_code: str,
        effective_time_us: int,
        end_time_us: int | None,
        entry_json: str,
        now_us: int,
        account_id: str = "",
    ) -> None:
        self.state.prices[(price_id, version)] = (
            hashlib.sha256(entry_json.encode()).hexdigest(),
            entry_json,
        )

    def get_revision(self, name: str) -> int:
        return self.state.revisions.get(name, 0)

    def bump_revision(self, name: str) -> None:
        self.state.revisions[name] = self.state.revisions.get(name, 0) + 1

    def usage_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]:
        records = sorted(
            (
                r
                for r in self.state.records
                if start_us <= r.event_time_us < end_us
                and r.record_kind == "USAGE"
                and (account_id is None or r.account_id == account_id)
                and (r.event_time_us, r.account_id, r.record_id) > after
            ),
            key=lambda r: (r.event_time_us, r.account_id, r.record_id),
        )
        return records[:limit]

    def adjustments_of(
        self, account_id: str, record_ids: list[str]
    ) -> dict[str, list[UsageRecord]]:
        found: dict[str, list[UsageRecord]] = {}
        for r in self.state.records:
            if r.account_id == account_id and r.corrects_record_id in record_ids:
                found.setdefault(r.corrects_record_id, []).append(r)
        return found

    def records_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[RecordView]:
        records = sorted(
            (
                r
                for r in self.state.records
                if start_us <= r.event_time_us < end_us
                and (account_id is None or r.account_id == account_id)
                and (r.event_time_us, r.account_id, r.record_id) > after
            ),
            key=lambda r: (r.event_time_us, r.account_id, r.record_id),
        )[:limit]
        return [RecordView(r, r.record_kind == "USAGE" and self._corrected(r)) for r in records]

    def review_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        estimated_share_min_bps: int,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]:
        calls = [
            r
            for r in self.state.records
            if start_us <= r.event_time_us < end_us
            and r.record_kind == "USAGE"
            and (account_id is None or r.account_id == account_id)
        ]
        counts: dict[str, tuple[int, int]] = {}
        for r in calls:
            estimated, total = counts.get(r.account_id, (0, 0))
            counts[r.account_id] = (
                estimated + (r.usage_source is UsageSource.ESTIMATED),
                total + 1,
            )
        listed = sorted(
            (
                r
                for r in calls
                if (r.event_time_us, r.account_id, r.record_id) > after
                and not self._corrected(r)
                and (
                    r.usage_source is UsageSource.MISSING
                    or (
                        r.usage_source is UsageSource.ESTIMATED
                        and share_reaches(*counts[r.account_id], estimated_share_min_bps)
                    )
                )
            ),
            key=lambda r: (r.event_time_us, r.account_id, r.record_id),
        )
        return listed[:limit]

    def _corrected(self, record: UsageRecord) -> bool:
        return any(
            r.account_id == record.account_id
            and r.corrects_record_id == record.record_id
            and r.record_kind == "ADJUSTMENT"
            and r.usage_source is UsageSource.CORRECTED
            for r in self.state.records
        )


class FakeDatabase:
    """Transactions over a copy of the state, published on commit."""

    def __init__(self) -> None:
        self.state = FakeState()

    @contextmanager
    def write(self) -> Iterator[FakeStore]:
        working = copy.deepcopy(self.state)
        yield FakeStore(working)
        self.state = working

    @contextmanager
    def read(self) -> Iterator[FakeStore]:
        yield FakeStore(copy.deepcopy(self.state))


class FakeClock:
    def __init__(self, now_us: int) -> None:
        self.now = now_us

    def now_us(self) -> int:
        return self.now
