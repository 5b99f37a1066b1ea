"""What the service layer needs from storage, as structural interfaces.

The SQL adapter (``metering.storage.store``) satisfies these without
importing them; unit tests can supply fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from metering.domain.accounts import Account, BillingMode
from metering.domain.budgets import Budget
from metering.domain.exports import RecordView
from metering.domain.ledger import Entry, TransactionKind
from metering.domain.missing import MissingUsagePolicy
from metering.domain.reconcile import LocalTally
from metering.domain.records import NewResult, NewTransaction, UsageRecord
from metering.domain.reservations import Reservation, ReservationState
from metering.domain.summary import Aggregate, SummaryFilter


class StoredResultLike(Protocol):
    @property
    def operation(self) -> str: ...
    @property
    def payload_sha256(self) -> str: ...
    @property
    def result_json(self) -> str: ...


class Store(Protocol):
    def get_account(self, account_id: str, *, for_update: bool = False) -> Account | None: ...
    def insert_account(self, account: Account) -> None: ...
    def get_balances(self, account_id: str) -> tuple[int, int]: ...
    def update_account_settings(self, account: Account) -> None: ...
    def get_api_key_mode(self, account_id: str, api_key_id: str) -> BillingMode | None: ...
    def get_api_key_modes(
        self, pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], BillingMode]: ...
    def set_api_key_mode(
        self, account_id: str, api_key_id: str, mode: BillingMode | None, now_us: int
    ) -> None: ...
    def lock_accounts(self, account_ids: list[str]) -> dict[str, tuple[Account, int, int]]: ...
    def get_stored_results(
        self, keys: list[tuple[str, str]]
    ) -> Mapping[tuple[str, str], StoredResultLike]: ...
    def append_transactions(self, transactions: list[NewTransaction]) -> None: ...
    def insert_usage_records(self, records: list[UsageRecord]) -> None: ...
    def store_results(self, results: list[NewResult]) -> None: ...
    def set_balances_many(self, balances: list[tuple[str, int, int]]) -> None: ...
    def get_usage_record(self, account_id: str, record_id: str) -> UsageRecord | None: ...
    def usage_tallies(
        self, start_us: int, end_us: int, provider: str, account_id: str | None
    ) -> list[LocalTally]: ...
    def calls_between(
        self, start_us: int, end_us: int, provider: str, account_id: str | None, limit: int
    ) -> list[UsageRecord]: ...
    def accounts_of_keys(self, api_key_ids: list[str]) -> dict[str, str]: ...
    def missing_usage_policies(self, account_id: str | None = None) -> list[MissingUsagePolicy]: ...
    def put_missing_usage_policy(self, policy: MissingUsagePolicy, now_us: int) -> None: ...
    def delete_missing_usage_policy(self, account_id: str, provider: str, model: str) -> bool: ...
    def get_usage_record_by_request(
        self, account_id: str, request_id: str
    ) -> UsageRecord | None: ...
    def insert_reservation(self, reservation: Reservation) -> None: ...
    def get_reservation(self, account_id: str, reservation_id: str) -> Reservation | None: ...
    def resolve_reservation(
        self,
        account_id: str,
        reservation_id: str,
        state: ReservationState,
        now_us: int,
        record_id: str | None,
    ) -> bool: ...
    def get_holds(self, account_id: str) -> tuple[int, int]: ...
    def set_holds(self, account_id: str, held_nanos: int, held_credits: int) -> None: ...
    def due_reservations(self, now_us: int, limit: int) -> list[tuple[str, str]]: ...
    def budgets_for(self, account_id: str) -> list[Budget]: ...
    def budgets_for_accounts(self, account_ids: list[str]) -> dict[str, list[Budget]]: ...
    def put_budget(self, budget: Budget, now_us: int) -> None: ...
    def delete_budget(self, account_id: str, budget_id: str) -> bool: ...
    def budget_usage(self, budget: Budget, start_us: int) -> int: ...
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
    ) -> bool: ...
    def budget_events(
        self, after: tuple[int, str], account_id: str | None, limit: int
    ) -> list[dict[str, Any]]: ...
    def set_balances(self, account_id: str, balance_nanos: int, request_credits: int) -> None: ...
    def get_stored_result(self, account_id: str, request_id: str) -> StoredResultLike | None: ...
    def store_result(
        self,
        account_id: str,
        request_id: str,
        operation: str,
        payload_sha256: str,
        result_json: str,
        now_us: int,
    ) -> None: ...
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
    ) -> None: ...
    def insert_usage_record(self, record: UsageRecord) -> None: ...
    def summarize(self, flt: SummaryFilter) -> list[Aggregate]: ...
    def price_rows(self) -> list[tuple[str, int, str, str]]: ...
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
    ) -> None: ...
    def get_revision(self, name: str) -> int: ...
    def bump_revision(self, name: str) -> None: ...
    def usage_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]: ...
    def adjustments_of(
        self, account_id: str, record_ids: list[str]
    ) -> dict[str, list[UsageRecord]]: ...
    def records_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[RecordView]: ...
    def review_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        estimated_share_min_bps: int,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]: ...


class Database(Protocol):
    """Opens transactions. ``write`` commits when its block exits normally and
    raises ``DuplicateKeyError``-like exceptions listed in ``duplicate_key_errors``."""

    def write(self) -> AbstractContextManager[Store]: ...
    def read(self) -> AbstractContextManager[Store]: ...


class Clock(Protocol):
    def now_us(self) -> int: ...
