"""SQL implementation of the store the service layer works through.

A :class:`SqlStore` is bound to one open transaction; :class:`SqlDatabase`
opens write and read transactions and commits when the block ends without an
exception. The service layer decides where transactions begin and end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from metering.domain.accounts import Account, BillingMode, RequestAsset, UnpricedPolicy
from metering.domain.auth import Role, TokenInfo
from metering.domain.budgets import Budget, BudgetMetric, BudgetPeriod
from metering.domain.errors import Unavailable
from metering.domain.exports import BASIS_POINTS_MAX, RecordView
from metering.domain.ledger import ASSET_REQUEST_CREDITS, Entry, TransactionKind
from metering.domain.missing import Fallback, MissingUsagePolicy
from metering.domain.reconcile import LocalTally
from metering.domain.records import NewResult, NewTransaction, UsageRecord
from metering.domain.reservations import ExpiryPolicy, Reservation, ReservationState
from metering.domain.summary import SLICE_US, Aggregate, Segment, SummaryFilter
from metering.domain.usage import TOKEN_FIELDS, TokenUsage, UsageSource
from metering.storage import schema as t
from metering.storage.engine import WriterLock, write_lock_for


class DuplicateKey(Exception):
    """A unique key was taken by a concurrent transaction; retry the whole unit."""


@dataclass(frozen=True)
class StoredResult:
    operation: str
    payload_sha256: str
    result_json: str


@dataclass
class LedgerReport:
    accounts_checked: int = 0
    transactions_checked: int = 0
    entries_checked: int = 0
    usage_records_checked: int = 0
    problems: list[str] = field(default_factory=list)
    system_balances: dict[tuple[str, str], int] = field(default_factory=dict)


# --- The write path's statements as driver SQL -----------------------------------------
# A usage batch runs the same few statements every time; building them as SQLAlchemy
# constructs and compiling (or cache-looking-up) them per execution, then building
# every row's parameters through the compiled statement, cost more than the database
# work. These are plain SQL strings made once per dialect and shape, run with
# ``exec_driver_sql`` (SQLAlchemy still wraps errors, so DuplicateKey and
# disconnects are detected as before) on rows given as tuples in column order.
# SQLite runs an executemany of a one-row statement (prepared once, in C).
# PostgreSQL gets one statement per table whatever the number of rows: an array
# per column, unnested (``INSERT ... SELECT * FROM unnest(...)``, ``= ANY(...)``),
# so the SQL text stays short and the same (psycopg parses and caches it once;
# a multi-row VALUES with thousands of placeholders is parsed on every call).

_LEDGER_TRANSACTION_COLUMNS = (
    "account_id",
    "transaction_id",
    "kind",
    "request_id",
    "reason",
    "create_time_us",
    "corrects_transaction_id",
)
_LEDGER_ENTRY_COLUMNS = ("account_id", "transaction_id", "seq", "ledger_account", "asset", "amount")
_IDEMPOTENCY_COLUMNS = (
    "account_id",
    "request_id",
    "operation",
    "payload_sha256",
    "result_json",
    "create_time_us",
)
_USAGE_COLUMNS = (
    "account_id",
    "record_id",
    "request_id",
    "event_time_us",
    "record_time_us",
    "provider",
    "model",
    "api_key_id",
    "service",
    "streamed",
    "usage_source",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "currency_code",
    "cost_nanos",
    "request_credits",
    "price_id",
    "price_version",
    "transaction_id",
    "labels_json",
    "record_kind",
    "request_count",
    "corrects_record_id",
    "billing_mode",
    "unpriced",
    "batch",
)
_ACCOUNT_COLUMNS = tuple(column.name for column in t.accounts.columns)
_BUDGET_COLUMNS = tuple(column.name for column in t.budgets.columns)
_ROLLUP_KEY_COLUMNS = ("account_id", "slice", *t.ROLLUP_KEYS)
_ROLLUP_COLUMNS = (*_ROLLUP_KEY_COLUMNS, *t.ROLLUP_SUMS)
_GLOBAL_ROLLUP_KEY_COLUMNS = ("slice", *t.GLOBAL_ROLLUP_KEYS)
_GLOBAL_ROLLUP_COLUMNS = (*_GLOBAL_ROLLUP_KEY_COLUMNS, *t.ROLLUP_SUMS)
# Where each global rollup key sits in a per-account rollup key.
_GLOBAL_KEY_INDEXES = tuple(_ROLLUP_KEY_COLUMNS.index(name) for name in _GLOBAL_ROLLUP_KEY_COLUMNS)
# add_to_rollups builds its sums in this order.
if t.ROLLUP_SUMS != (
    "request_count",
    "unpriced_request_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "request_credits",
):
    raise AssertionError("schema.ROLLUP_SUMS changed: update SqlStore.add_to_rollups")
_NO_LABELS_JSON = "{}"


def _pg_array_type(table: str, column: str) -> str:
    python_type = t.metadata.tables[table].c[column].type.python_type
    if python_type is bool:
        return "boolean[]"
    return "bigint[]" if python_type is int else "text[]"


@functools.lru_cache(maxsize=64)
def _insert_sql(
    dialect: str, table: str, columns: tuple[str, ...], conflict: tuple[str, ...] = ()
) -> str:
    """The INSERT of rows: SQLite one row (run as an executemany), PostgreSQL an
    array per column.

    With ``conflict`` (the key columns): an upsert adding the ROLLUP_SUMS of the
    new row to the existing one.
    """
    if dialect == "sqlite":
        values = "VALUES (" + ", ".join(["?"] * len(columns)) + ")"
    else:
        arrays = ", ".join(f"%s::{_pg_array_type(table, column)}" for column in columns)
        values = f"SELECT * FROM unnest({arrays})"  # noqa: S608 (types, no values)
    # Only this module's table and column names are ever formatted in; values are bound.
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {values}"
    if conflict:
        sums = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in t.ROLLUP_SUMS)
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {sums}"
    return sql


@functools.lru_cache(maxsize=256)
def _values_sql(template: str, rows: int) -> str:
    """SQLite: ``template`` with ``{}`` replaced by that many ``(?, ?)`` rows."""
    return template.format(", ".join(["(?, ?)"] * rows))


@functools.lru_cache(maxsize=256)
def _in_sql(template: str, *counts: int) -> str:
    """SQLite: ``template`` with each ``{}`` replaced by that many placeholders."""
    return template.format(*(", ".join(["?"] * count) for count in counts))


# Account snapshots by their settings' row values: a batch reads (and locks) every
# account it touches, and building the same immutable Account again was a visible
# part of a record's cost. Bounded; a race only builds an equal value twice.
# Rows of every accounts query here have the table's columns in _ACCOUNT_COLUMNS order.
_account_settings_of = operator.itemgetter(
    *(
        index
        for index, name in enumerate(_ACCOUNT_COLUMNS)
        if name not in ("balance_nanos", "request_credits", "held_nanos", "held_credits")
    )
)
_ACCOUNTS_BY_ROW: dict[tuple[Any, ...], Account] = {}
_ACCOUNTS_BY_ROW_MAX = 100_000


def _account(row: Any) -> Account:
    key = _account_settings_of(row)
    account = _ACCOUNTS_BY_ROW.get(key)
    if account is None:
        if len(_ACCOUNTS_BY_ROW) >= _ACCOUNTS_BY_ROW_MAX:
            _ACCOUNTS_BY_ROW.clear()
        account = _ACCOUNTS_BY_ROW[key] = _new_account(row)
    return account


def _new_account(row: Any) -> Account:
    return Account(
        account_id=row.account_id,
        currency_code=row.currency_code,
        billing_mode=BillingMode(row.billing_mode),
        allow_negative_balance=bool(row.allow_negative_balance),
        create_time_us=row.create_time_us,
        unpriced_policy=UnpricedPolicy(row.unpriced_policy),
        price_adjustment_bps=int(row.price_adjustment_bps),
        request_asset=RequestAsset(row.request_asset),
        default_request_price_nanos=int(row.default_request_price_nanos),
        default_request_credits=int(row.default_request_credits),
        reservation_expiry_policy=ExpiryPolicy(row.reservation_expiry_policy),
        time_zone=row.time_zone,
        tenant_id=row.tenant_id,
    )


def _settings(account: Account) -> dict[str, Any]:
    return {
        "unpriced_policy": account.unpriced_policy.value,
        "price_adjustment_bps": account.price_adjustment_bps,
        "request_asset": account.request_asset.value,
        "default_request_price_nanos": account.default_request_price_nanos,
        "default_request_credits": account.default_request_credits,
        "reservation_expiry_policy": account.reservation_expiry_policy.value,
        "time_zone": account.time_zone,
    }


def _usage_values(record: UsageRecord) -> tuple[Any, ...]:
    """A usage record's row, in _USAGE_COLUMNS order."""
    usage = record.usage
    labels = record.labels
    return (
        record.account_id,
        record.record_id,
        record.request_id,
        record.event_time_us,
        record.record_time_us,
        record.provider,
        record.model,
        record.api_key_id,
        record.service,
        record.streamed,
        record.usage_source.value,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.reasoning_tokens,
        record.currency_code,
        record.cost_nanos,
        record.request_credits,
        record.price_id,
        record.price_version,
        record.transaction_id,
        json.dumps(labels, sort_keys=True, separators=(",", ":")) if labels else _NO_LABELS_JSON,
        record.record_kind,
        record.request_count,
        record.corrects_record_id,
        record.billing_mode,
        record.unpriced,
        record.batch,
    )


def _usage_record(row: Any) -> UsageRecord:
    return UsageRecord(
        account_id=row.account_id,
        record_id=row.record_id,
        request_id=row.request_id,
        transaction_id=row.transaction_id,
        event_time_us=int(row.event_time_us),
        record_time_us=int(row.record_time_us),
        provider=row.provider,
        model=row.model,
        api_key_id=row.api_key_id,
        service=row.service,
        streamed=bool(row.streamed),
        usage_source=UsageSource(row.usage_source),
        usage=TokenUsage(
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            cache_read_tokens=int(row.cache_read_tokens),
            cache_write_tokens=int(row.cache_write_tokens),
            cache_write_1h_tokens=int(row.cache_write_1h_tokens),
            reasoning_tokens=int(row.reasoning_tokens),
        ),
        currency_code=row.currency_code,
        cost_nanos=int(row.cost_nanos),
        request_credits=int(row.request_credits),
        price_id=row.price_id,
        price_version=int(row.price_version),
        labels=json.loads(row.labels_json),
        record_kind=row.record_kind,
        request_count=int(row.request_count),
        corrects_record_id=row.corrects_record_id,
        billing_mode=row.billing_mode,
        unpriced=bool(row.unpriced),
        batch=bool(row.batch),
    )


class SqlStore:
    """Repository operations inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self._dialect: str = connection.dialect.name

    def _insert_many(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        conflict: tuple[str, ...] = (),
    ) -> None:
        """Insert rows (tuples in ``columns`` order) with the write path's driver SQL."""
        if not rows:
            return
        sql = _insert_sql(self._dialect, table, columns, conflict)
        if self._dialect == "sqlite":
            self._c.exec_driver_sql(sql, rows)
        else:
            self._c.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))

    # Accounts -----------------------------------------------------------

    def get_account(self, account_id: str, *, for_update: bool = False) -> Account | None:
        query = select(t.accounts).where(t.accounts.c.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        row = self._c.execute(query).first()
        return _account(row) if row else None

    def get_accounts(self, account_ids: list[str]) -> dict[str, Account]:
        """The existing accounts among these, in one query (no locks)."""
        if not account_ids:
            return {}
        select_accounts = f"SELECT {', '.join(_ACCOUNT_COLUMNS)} FROM accounts"  # noqa: S608
        if self._dialect == "sqlite":
            sql = _in_sql(select_accounts + " WHERE account_id IN ({})", len(account_ids))
            rows = self._c.exec_driver_sql(sql, tuple(account_ids))
        else:
            sql = select_accounts + " WHERE account_id = ANY(%s)"
            rows = self._c.exec_driver_sql(sql, (list(account_ids),))
        return {row.account_id: _account(row) for row in rows}

    def insert_account(self, account: Account) -> None:
        self._c.execute(
            insert(t.accounts).values(
                account_id=account.account_id,
                currency_code=account.currency_code,
                billing_mode=account.billing_mode.value,
                allow_negative_balance=account.allow_negative_balance,
                balance_nanos=0,
                request_credits=0,
                create_time_us=account.create_time_us,
                tenant_id=account.tenant_id,
                **_settings(account),
            )
        )

    def update_account_settings(self, account: Account) -> None:
        """Write an account's billing settings (its balances are untouched)."""
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.account_id == account.account_id)
            .values(
                billing_mode=account.billing_mode.value,
                allow_negative_balance=account.allow_negative_balance,
                **_settings(account),
            )
        )

    def get_api_key_mode(self, account_id: str, api_key_id: str) -> BillingMode | None:
        row = self._c.execute(
            select(t.api_keys.c.billing_mode).where(
                t.api_keys.c.account_id == account_id, t.api_keys.c.api_key_id == api_key_id
            )
        ).first()
        return BillingMode(row.billing_mode) if row and row.billing_mode else None

    def get_api_key_modes(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], BillingMode]:
        """The billing-mode overrides of these (account, API key) pairs, in one query."""
        if not pairs:
            return {}
        k = t.api_keys.c
        wanted = set(pairs)
        rows = self._c.execute(
            select(k.account_id, k.api_key_id, k.billing_mode).where(
                k.account_id.in_(sorted({a for a, _ in pairs})),
                k.api_key_id.in_(sorted({key for _, key in pairs})),
                k.billing_mode.is_not(None),
            )
        )
        return {
            (row.account_id, row.api_key_id): BillingMode(row.billing_mode)
            for row in rows
            if (row.account_id, row.api_key_id) in wanted
        }

    def set_api_key_mode(
        self, account_id: str, api_key_id: str, mode: BillingMode | None, now_us: int
    ) -> None:
        keys = t.api_keys.c
        where = (keys.account_id == account_id, keys.api_key_id == api_key_id)
        value = mode.value if mode else None
        updated = self._c.execute(
            update(t.api_keys).where(*where).values(billing_mode=value, update_time_us=now_us)
        )
        if updated.rowcount == 0:
            self._c.execute(
                insert(t.api_keys).values(
                    account_id=account_id,
                    api_key_id=api_key_id,
                    billing_mode=value,
                    update_time_us=now_us,
                )
            )

    def get_balances(self, account_id: str) -> tuple[int, int]:
        row = self._c.execute(
            select(t.accounts.c.balance_nanos, t.accounts.c.request_credits).where(
                t.accounts.c.account_id == account_id
            )
        ).one()
        return int(row.balance_nanos), int(row.request_credits)

    def lock_accounts(self, account_ids: list[str]) -> dict[str, tuple[Account, int, int]]:
        """Lock these accounts' rows in id order (no deadlocks between batches); read them."""
        if not account_ids:
            return {}
        select_accounts = f"SELECT {', '.join(_ACCOUNT_COLUMNS)} FROM accounts"  # noqa: S608
        if self._dialect == "sqlite":
            # No row locks: SQLite's write transactions (BEGIN IMMEDIATE) are exclusive.
            sql = _in_sql(
                select_accounts + " WHERE account_id IN ({}) ORDER BY account_id", len(account_ids)
            )
            rows = self._c.exec_driver_sql(sql, tuple(account_ids))
        else:
            sql = select_accounts + " WHERE account_id = ANY(%s) ORDER BY account_id FOR UPDATE"
            rows = self._c.exec_driver_sql(sql, (list(account_ids),))
        return {
            row.account_id: (_account(row), int(row.balance_nanos), int(row.request_credits))
            for row in rows
        }

    def set_balances_many(self, balances: list[tuple[str, int, int]]) -> None:
        """Write several accounts' cached balances in one statement."""
        if not balances:
            return
        if self._dialect == "sqlite":
            self._c.exec_driver_sql(
                "UPDATE accounts SET balance_nanos = ?, request_credits = ? WHERE account_id = ?",
                [(balance, credits, account_id) for account_id, balance, credits in balances],
            )
            return
        # PostgreSQL: one statement for all of them (an executemany is a statement each).
        self._c.exec_driver_sql(
            "UPDATE accounts SET balance_nanos = v.balance, request_credits = v.credits"
            " FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS v (target, balance, credits)"
            " WHERE accounts.account_id = v.target",
            tuple(list(column) for column in zip(*balances, strict=True)),
        )

    def set_balances(self, account_id: str, balance_nanos: int, request_credits: int) -> None:
        """Write the cached balances; the caller holds the account's row lock."""
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.account_id == account_id)
            .values(balance_nanos=balance_nanos, request_credits=request_credits)
        )

    # Idempotency ----------------------------------------------------------

    def get_stored_result(self, account_id: str, request_id: str) -> StoredResult | None:
        row = self._c.execute(
            select(
                t.idempotency_keys.c.operation,
                t.idempotency_keys.c.payload_sha256,
                t.idempotency_keys.c.result_json,
            ).where(
                and_(
                    t.idempotency_keys.c.account_id == account_id,
                    t.idempotency_keys.c.request_id == request_id,
                )
            )
        ).first()
        return StoredResult(row.operation, row.payload_sha256, row.result_json) if row else None

    def store_result(
        self,
        account_id: str,
        request_id: str,
        operation: str,
        payload_sha256: str,
        result_json: str,
        now_us: int,
    ) -> None:
        self.store_results(
            [NewResult(account_id, request_id, operation, payload_sha256, result_json, now_us)]
        )

    def store_results(self, results: list[NewResult]) -> None:
        self._insert_many(
            "idempotency_keys",
            _IDEMPOTENCY_COLUMNS,
            [
                (r.account_id, r.request_id, r.operation, r.payload_sha256, r.result_json, r.now_us)
                for r in results
            ],
        )

    def get_stored_results(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredResult]:
        """The stored results of these (account, request id) keys, in one query.

        The exact pairs are joined to the table, so each is one primary-key probe
        (an IN list per column would probe every account with every request id).
        """
        if not keys:
            return {}
        pairs = sorted(set(keys))
        columns = "k.account_id, k.request_id, k.operation, k.payload_sha256, k.result_json"
        if self._dialect == "sqlite":
            sql = _values_sql(
                f"SELECT {columns} FROM (VALUES {{}}) AS v JOIN idempotency_keys AS k"  # noqa: S608
                " ON k.account_id = v.column1 AND k.request_id = v.column2",
                len(pairs),
            )
            rows = self._c.exec_driver_sql(sql, tuple(value for pair in pairs for value in pair))
        else:
            sql = (
                f"SELECT {columns} FROM unnest(%s::text[], %s::text[])"  # noqa: S608
                " AS v (account_id, request_id) JOIN idempotency_keys AS k"
                " ON k.account_id = v.account_id AND k.request_id = v.request_id"
            )
            account_ids, request_ids = ([a for a, _ in pairs], [r for _, r in pairs])
            rows = self._c.exec_driver_sql(sql, (account_ids, request_ids))
        wanted = set(pairs)
        return {
            (row.account_id, row.request_id): StoredResult(
                row.operation, row.payload_sha256, row.result_json
            )
            for row in rows
            if (row.account_id, row.request_id) in wanted
        }

    # Ledger ---------------------------------------------------------------

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
        self.append_transactions(
            [
                NewTransaction(
                    account_id=account_id,
                    transaction_id=transaction_id,
                    kind=kind,
                    request_id=request_id,
                    reason=reason,
                    now_us=now_us,
                    entries=entries,
                    corrects_transaction_id=corrects_transaction_id,
                )
            ]
        )

    def append_transactions(self, transactions: list[NewTransaction]) -> None:
        """Insert transactions and their entries, each table in one statement."""
        self._insert_many(
            "ledger_transactions",
            _LEDGER_TRANSACTION_COLUMNS,
            [
                (
                    tx.account_id,
                    tx.transaction_id,
                    tx.kind.value,
                    tx.request_id,
                    tx.reason,
                    tx.now_us,
                    tx.corrects_transaction_id,
                )
                for tx in transactions
            ],
        )
        self._insert_many(
            "ledger_entries",
            _LEDGER_ENTRY_COLUMNS,
            [
                (
                    tx.account_id,
                    tx.transaction_id,
                    seq,
                    entry.ledger_account,
                    entry.asset,
                    entry.amount,
                )
                for tx in transactions
                for seq, entry in enumerate(tx.entries)
            ],
        )

    def insert_usage_record(self, record: UsageRecord) -> None:
        self.insert_usage_records([record])

    def insert_usage_records(self, records: list[UsageRecord]) -> None:
        """Insert usage records in one statement."""
        if not records:
            return
        self._insert_many("usage_records", _USAGE_COLUMNS, [_usage_values(r) for r in records])
        self.add_to_rollups(records)

    def get_usage_record(self, account_id: str, record_id: str) -> UsageRecord | None:
        u = t.usage_records.c
        row = self._c.execute(
            select(t.usage_records).where(u.account_id == account_id, u.record_id == record_id)
        ).first()
        return _usage_record(row) if row else None

    def get_usage_record_by_request(self, account_id: str, request_id: str) -> UsageRecord | None:
        u = t.usage_records.c
        row = self._c.execute(
            select(t.usage_records).where(u.account_id == account_id, u.request_id == request_id)
        ).first()
        return _usage_record(row) if row else None

    def count_usage_records(self, account_id: str | None = None) -> int:
        query = select(func.count()).select_from(t.usage_records)
        if account_id is not None:
            query = query.where(t.usage_records.c.account_id == account_id)
        return int(self._c.execute(query).scalar_one())

    def count_ledger_entries(self, account_id: str | None = None) -> int:
        query = select(func.count()).select_from(t.ledger_entries)
        if account_id is not None:
            query = query.where(t.ledger_entries.c.account_id == account_id)
        return int(self._c.execute(query).scalar_one())

    # Summaries ------------------------------------------------------------

    def summarize(self, flt: SummaryFilter) -> list[Aggregate]:
        """Sums per (bucket, group keys, currency) over the filter's range.

        Buckets are computed by the database: within each constant-offset
        segment, bucket = (slice + offset) // slices per bucket. Whole slices
        come from the rollups, the partial slices at the range's ends from
        the records. A bucket cut by an offset change comes back in two
        parts, which the caller merges by local bucket.
        """
        pieces = flt.segments or (Segment(flt.start_us, flt.end_us, 0, 0),)
        parts: list[Aggregate] = []
        for piece in pieces:
            first = -(-piece.start_us // SLICE_US)  # the first slice starting inside
            last = piece.end_us // SLICE_US  # the slice the piece ends in (exclusive)
            if first >= last:
                parts += self._summarize_records(flt, piece, piece.start_us, piece.end_us)
                continue
            parts += self._summarize_records(flt, piece, piece.start_us, first * SLICE_US)
            parts += self._summarize_rollups(flt, piece, first, last)
            parts += self._summarize_records(flt, piece, last * SLICE_US, piece.end_us)
        merged: dict[tuple[int, tuple[str, ...], str], Aggregate] = {}
        for part in parts:
            key = (part.start_us, part.keys, part.currency_code)
            if key in merged:
                merged[key].add(part)
            else:
                merged[key] = part
        return list(merged.values())

    def _summarize_records(
        self, flt: SummaryFilter, piece: Segment, start_us: int, end_us: int
    ) -> list[Aggregate]:
        if start_us >= end_us:
            return []
        u = t.usage_records.c
        sums = [
            func.sum(u.request_count).label("request_count"),
            func.sum(case((u.unpriced, u.request_count), else_=0)).label("unpriced_request_count"),
            *(
                func.sum(getattr(u, name)).label(name)
                for name in t.ROLLUP_SUMS
                if name not in ("request_count", "unpriced_request_count")
            ),
        ]
        groups = self._groups(flt, u, piece, u.event_time_us // SLICE_US)
        query = select(*groups, *sums, *_source_sums(u)).where(
            u.event_time_us >= start_us, u.event_time_us < end_us
        )
        if flt.usage_sources:
            query = query.where(u.usage_source.in_(flt.usage_sources))
        if flt.account_id is not None:
            query = query.where(u.account_id == flt.account_id)
        if flt.currency_code is not None:
            query = query.where(u.currency_code == flt.currency_code)
        return self._aggregates(flt, piece, query.group_by(*groups))

    def _summarize_rollups(
        self, flt: SummaryFilter, piece: Segment, first: int, last: int
    ) -> list[Aggregate]:
        # All accounts grouped by dashboard keys: the small table without accounts.
        global_ok = flt.account_id is None and all(
            key.value in t.GLOBAL_ROLLUP_KEYS for key in flt.group_by
        )
        r = (t.usage_rollups_global if global_ok else t.usage_rollups).c
        sums = [func.sum(getattr(r, name)).label(name) for name in t.ROLLUP_SUMS]
        groups = self._groups(flt, r, piece, r.slice)
        query = select(*groups, *sums, *_source_sums(r)).where(r.slice >= first, r.slice < last)
        if flt.usage_sources:
            query = query.where(r.usage_source.in_(flt.usage_sources))
        if flt.account_id is not None:
            query = query.where(r.account_id == flt.account_id)  # never the global table
        if flt.currency_code is not None:
            query = query.where(r.currency_code == flt.currency_code)
        return self._aggregates(flt, piece, query.group_by(*groups))

    @staticmethod
    def _groups(flt: SummaryFilter, columns: Any, piece: Segment, slice_of: Any) -> list[Any]:
        """GROUP BY terms; one object per term in SELECT and GROUP BY, so that PostgreSQL
        sees the same bound parameters in both and accepts the grouping."""
        groups: list[Any] = [getattr(columns, key.value) for key in flt.group_by]
        groups.append(columns.currency_code)
        if piece.slices_per_bucket:
            bucket = (slice_of + piece.offset_slices) // piece.slices_per_bucket
            groups.insert(0, bucket.label("bucket"))
        return groups

    def _aggregates(self, flt: SummaryFilter, piece: Segment, query: Any) -> list[Aggregate]:
        result: list[Aggregate] = []
        for row in self._c.execute(query):
            mapping = row._mapping
            start_us = flt.start_us
            if piece.slices_per_bucket:
                bucket = int(mapping["bucket"])
                # The bucket's start under this piece's offset, moved into the piece: an
                # instant inside the bucket, whatever offset the zone had at its start.
                start_us = max(
                    (bucket * piece.slices_per_bucket - piece.offset_slices) * SLICE_US,
                    piece.start_us,
                )
            aggregate = Aggregate(
                start_us=start_us,
                keys=tuple(str(mapping[key.value]) for key in flt.group_by),
                currency_code=str(mapping["currency_code"]),
            )
            for name in (*t.ROLLUP_SUMS, *_SOURCE_SUMS):
                setattr(aggregate, name, int(mapping[name]))
            result.append(aggregate)
        return result

    def add_to_rollups(self, records: list[UsageRecord]) -> None:
        """Add records to their slices' sums: one upsert per distinct slice and keys.

        Rows are upserted in key order (concurrent batches lock them in the same order).
        """
        sums: dict[tuple[Any, ...], list[int]] = {}
        for record in records:
            usage = record.usage
            key = (
                record.account_id,
                record.event_time_us // SLICE_US,
                record.model,
                record.provider,
                record.api_key_id,
                record.service,
                record.usage_source.value,
                record.currency_code,
            )
            values = (  # in ROLLUP_SUMS order
                record.request_count,
                record.request_count if record.unpriced else 0,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens,
                usage.reasoning_tokens,
                record.cost_nanos,
                record.request_credits,
            )
            total = sums.get(key)
            if total is None:
                sums[key] = list(values)
            else:
                total[:] = map(operator.add, total, values)
        if not sums:
            return
        rows = sorted(sums.items())
        self._insert_many(
            "usage_rollups",
            _ROLLUP_COLUMNS,
            [(*key, *total) for key, total in rows],
            conflict=_ROLLUP_KEY_COLUMNS,
        )
        totals: dict[tuple[Any, ...], list[int]] = {}
        for key, total in rows:
            global_key = tuple(key[index] for index in _GLOBAL_KEY_INDEXES)
            found = totals.get(global_key)
            if found is None:
                totals[global_key] = list(total)
            else:
                found[:] = map(operator.add, found, total)
        self._insert_many(
            "usage_rollups_global",
            _GLOBAL_ROLLUP_COLUMNS,
            [(*key, *total) for key, total in sorted(totals.items())],
            conflict=_GLOBAL_ROLLUP_KEY_COLUMNS,
        )

    # Prices ---------------------------------------------------------------

    def price_rows(self) -> list[tuple[str, int, str, str]]:
        """(price_id, version, entry_sha256, entry_json) of every stored price."""
        p = t.prices.c
        return [
            (row.price_id, int(row.version), row.entry_sha256, row.entry_json)
            for row in self._c.execute(select(p.price_id, p.version, p.entry_sha256, p.entry_json))
        ]

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
        self._c.execute(
            insert(t.prices).values(
                account_id=account_id,
                price_id=price_id,
                version=version,
                provider=provider,
                model=model,
                currency_code=currency_code,
                effective_time_us=effective_time_us,
                end_time_us=end_time_us,
                entry_json=entry_json,
                entry_sha256=hashlib.sha256(entry_json.encode()).hexdigest(),
                create_time_us=now_us,
            )
        )

    def get_revision(self, name: str) -> int:
        # Driver SQL: every usage batch reads the price revision (see _insert_sql).
        mark = "?" if self._dialect == "sqlite" else "%s"
        row = self._c.exec_driver_sql(
            f"SELECT revision FROM revisions WHERE name = {mark}",  # noqa: S608
            (name,),
        ).first()
        return int(row[0]) if row else 0

    def bump_revision(self, name: str) -> None:
        """Tell every process that ``name`` changed (they compare revisions)."""
        self._c.execute(
            update(t.revisions)
            .where(t.revisions.c.name == name)
            .values(revision=t.revisions.c.revision + 1)
        )

    # API tokens and tenants (0004) -----------------------------------------

    def insert_api_token(self, token: TokenInfo) -> None:
        self._c.execute(
            insert(t.api_tokens).values(
                token_id=token.token_id,
                name=token.name,
                role=token.role.value,
                tenant_id=token.tenant_id,
                hash=token.token_sha256,
                create_time_us=token.create_time_us,
                revoke_time_us=token.revoke_time_us,
            )
        )

    def api_tokens(self, *, include_revoked: bool) -> list[TokenInfo]:
        query = select(t.api_tokens).order_by(t.api_tokens.c.create_time_us)
        if not include_revoked:
            query = query.where(t.api_tokens.c.revoke_time_us.is_(None))
        return [
            TokenInfo(
                token_id=row.token_id,
                name=row.name,
                role=Role(row.role),
                tenant_id=row.tenant_id,
                token_sha256=row.hash,
                create_time_us=row.create_time_us,
                revoke_time_us=row.revoke_time_us,
            )
            for row in self._c.execute(query)
        ]

    def revoke_api_token(self, token_id: str, now_us: int) -> bool:
        """Revoke a token (once: a revoked token keeps its first time); False if unknown."""
        exists = self._c.execute(
            select(t.api_tokens.c.token_id).where(t.api_tokens.c.token_id == token_id)
        ).first()
        self._c.execute(
            update(t.api_tokens)
            .where(t.api_tokens.c.token_id == token_id, t.api_tokens.c.revoke_time_us.is_(None))
            .values(revoke_time_us=now_us)
        )
        return exists is not None

    def account_tenants(self, account_ids: list[str]) -> dict[str, str | None]:
        """The tenant of each existing account among ``account_ids`` (absent: no account)."""
        rows = self._c.execute(
            select(t.accounts.c.account_id, t.accounts.c.tenant_id).where(
                t.accounts.c.account_id.in_(account_ids)
            )
        )
        return {row.account_id: row.tenant_id for row in rows}

    # Repricing ------------------------------------------------------------

    def usage_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]:
        """Original usage records in [start, end) after a (time, account, id) key, in key order."""
        u = t.usage_records.c
        after_time, after_account, after_id = after
        query = (
            select(t.usage_records)
            .where(
                u.event_time_us >= start_us,
                u.event_time_us < end_us,
                u.record_kind == "USAGE",
                or_(
                    u.event_time_us > after_time,
                    and_(
                        u.event_time_us == after_time,
                        or_(
                            u.account_id > after_account,
                            and_(u.account_id == after_account, u.record_id > after_id),
                        ),
                    ),
                ),
            )
            .order_by(u.event_time_us, u.account_id, u.record_id)
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(u.account_id == account_id)
        return [_usage_record(row) for row in self._c.execute(query)]

    def adjustments_of(
        self, account_id: str, record_ids: list[str]
    ) -> dict[str, list[UsageRecord]]:
        """Per corrected record id: the adjustments linked to it, in one query."""
        if not record_ids:
            return {}
        u = t.usage_records.c
        rows = self._c.execute(
            select(t.usage_records)
            .where(u.account_id == account_id, u.corrects_record_id.in_(record_ids))
            .order_by(u.record_time_us, u.record_id)
        )
        found: dict[str, list[UsageRecord]] = {}
        for row in rows:
            found.setdefault(row.corrects_record_id, []).append(_usage_record(row))
        return found

    # Exports and the review queue -------------------------------------------

    def records_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[RecordView]:
        """Every stored row (calls and adjustments) in [start, end) after a (time, account,
        id) key, in key order, each with whether it is an original call since corrected."""
        u = t.usage_records.c
        query = (
            select(t.usage_records, _corrected(u).label("corrected"))
            .where(u.event_time_us >= start_us, u.event_time_us < end_us, _after(u, after))
            .order_by(u.event_time_us, u.account_id, u.record_id)
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(u.account_id == account_id)
        return [
            RecordView(_usage_record(row), bool(row.corrected) and row.record_kind == "USAGE")
            for row in self._c.execute(query)
        ]

    def review_page(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        estimated_share_min_bps: int,
        after: tuple[int, str, str],
        limit: int,
    ) -> list[UsageRecord]:
        """Original calls in [start, end) not yet corrected that are MISSING, or ESTIMATED
        in an account whose ESTIMATED calls are at least this share of its calls in the
        range (by the calls' first source); after a key, in key order.

        The kind and source conditions are literals, not parameters, so that both
        databases can prove they imply the partial index ix_usage_records_review.
        """
        u = t.usage_records.c
        estimated = u.usage_source == literal_column(f"'{UsageSource.ESTIMATED.value}'")
        missing = u.usage_source == literal_column(f"'{UsageSource.MISSING.value}'")
        if estimated_share_min_bps > 0:
            s = t.usage_records.alias("share")
            shares = (
                select(s.c.account_id)
                .where(
                    s.c.record_kind == literal_column("'USAGE'"),
                    s.c.event_time_us >= start_us,
                    s.c.event_time_us < end_us,
                )
                .group_by(s.c.account_id)
                .having(
                    func.sum(
                        case(
                            (s.c.usage_source == literal_column("'ESTIMATED'"), BASIS_POINTS_MAX),
                            else_=0,
                        )
                    )
                    >= estimated_share_min_bps * func.count()
                )
            )
            if account_id is not None:
                shares = shares.where(s.c.account_id == account_id)
            estimated = and_(estimated, u.account_id.in_(shares))
        query = (
            select(t.usage_records)
            .where(
                u.record_kind == literal_column("'USAGE'"),
                u.usage_source.in_([literal_column(f"'{name}'") for name in _REVIEW_SOURCES]),
                u.event_time_us >= start_us,
                u.event_time_us < end_us,
                or_(missing, estimated),
                ~_corrected(u),
                _after(u, after),
            )
            .order_by(u.event_time_us, u.account_id, u.record_id)
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(u.account_id == account_id)
        return [_usage_record(row) for row in self._c.execute(query)]

    # Reservations ----------------------------------------------------------

    def insert_reservation(self, reservation: Reservation) -> None:
        self._c.execute(
            insert(t.reservations).values(
                account_id=reservation.account_id,
                reservation_id=reservation.reservation_id,
                request_id=reservation.request_id,
                state=reservation.state.value,
                amount_nanos=reservation.amount_nanos,
                request_credits=reservation.request_credits,
                model=reservation.model,
                provider=reservation.provider,
                api_key_id=reservation.api_key_id,
                input_tokens=reservation.input_tokens,
                output_tokens=reservation.output_tokens,
                price_id=reservation.price_id,
                price_version=reservation.price_version,
                create_time_us=reservation.create_time_us,
                expire_time_us=reservation.expire_time_us,
            )
        )

    def get_reservation(self, account_id: str, reservation_id: str) -> Reservation | None:
        r = t.reservations.c
        row = self._c.execute(
            select(t.reservations).where(
                r.account_id == account_id, r.reservation_id == reservation_id
            )
        ).first()
        if row is None:
            return None
        return Reservation(
            account_id=row.account_id,
            reservation_id=row.reservation_id,
            request_id=row.request_id,
            state=ReservationState(row.state),
            amount_nanos=int(row.amount_nanos),
            request_credits=int(row.request_credits),
            model=row.model,
            provider=row.provider,
            api_key_id=row.api_key_id,
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            price_id=row.price_id,
            price_version=int(row.price_version),
            create_time_us=int(row.create_time_us),
            expire_time_us=int(row.expire_time_us),
            resolve_time_us=row.resolve_time_us,
            record_id=row.record_id,
        )

    def resolve_reservation(
        self,
        account_id: str,
        reservation_id: str,
        state: ReservationState,
        now_us: int,
        record_id: str | None,
    ) -> bool:
        """OPEN -> ``state``; False when it was no longer open (it resolves once)."""
        r = t.reservations.c
        done = self._c.execute(
            update(t.reservations)
            .where(
                r.account_id == account_id,
                r.reservation_id == reservation_id,
                r.state == ReservationState.OPEN.value,
            )
            .values(state=state.value, resolve_time_us=now_us, record_id=record_id)
        )
        return bool(done.rowcount == 1)

    def get_holds(self, account_id: str) -> tuple[int, int]:
        a = t.accounts.c
        row = self._c.execute(
            select(a.held_nanos, a.held_credits).where(a.account_id == account_id)
        ).one()
        return int(row.held_nanos), int(row.held_credits)

    def set_holds(self, account_id: str, held_nanos: int, held_credits: int) -> None:
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.account_id == account_id)
            .values(held_nanos=held_nanos, held_credits=held_credits)
        )

    def due_reservations(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        """(account, reservation) of open holds past their expiry, oldest first."""
        r = t.reservations.c
        rows = self._c.execute(
            select(r.account_id, r.reservation_id)
            .where(r.state == ReservationState.OPEN.value, r.expire_time_us <= now_us)
            .order_by(r.expire_time_us)
            .limit(limit)
        )
        return [(row.account_id, row.reservation_id) for row in rows]

    # Budgets ----------------------------------------------------------------

    def budgets_for(self, account_id: str) -> list[Budget]:
        return self.budgets_for_accounts([account_id]).get(account_id, [])

    def budgets_for_accounts(self, account_ids: list[str]) -> dict[str, list[Budget]]:
        """The budgets of these accounts, in one query (most accounts have none)."""
        if not account_ids:
            return {}
        # Driver SQL: this runs in every usage batch (see _insert_sql).
        select_budgets = f"SELECT {', '.join(_BUDGET_COLUMNS)} FROM budgets"  # noqa: S608
        order = " ORDER BY account_id, budget_id"
        if self._dialect == "sqlite":
            sql = _in_sql(select_budgets + " WHERE account_id IN ({})" + order, len(account_ids))
            rows = self._c.exec_driver_sql(sql, tuple(account_ids))
        else:
            sql = select_budgets + " WHERE account_id = ANY(%s)" + order
            rows = self._c.exec_driver_sql(sql, (list(account_ids),))
        found: dict[str, list[Budget]] = {}
        for budget in (
            Budget(
                account_id=row.account_id,
                budget_id=row.budget_id,
                period=BudgetPeriod(row.period),
                metric=BudgetMetric(row.metric),
                limit_value=int(row.limit_value),
                hard=bool(row.hard),
                api_key_id=row.api_key_id,
                model=row.model,
                rolling_seconds=int(row.rolling_seconds),
                thresholds=tuple(json.loads(row.thresholds_json)),
            )
            for row in rows
        ):
            found.setdefault(budget.account_id, []).append(budget)
        return found

    def put_budget(self, budget: Budget, now_us: int) -> None:
        """Create or replace a budget (the caller holds the account's row lock)."""
        b = t.budgets.c
        self._c.execute(
            delete(t.budgets).where(
                b.account_id == budget.account_id, b.budget_id == budget.budget_id
            )
        )
        self._c.execute(
            insert(t.budgets).values(
                account_id=budget.account_id,
                budget_id=budget.budget_id,
                api_key_id=budget.api_key_id,
                model=budget.model,
                period=budget.period.value,
                rolling_seconds=budget.rolling_seconds,
                metric=budget.metric.value,
                limit_value=budget.limit_value,
                hard=budget.hard,
                thresholds_json=json.dumps(list(budget.thresholds)),
                update_time_us=now_us,
            )
        )

    # Reconciliation -------------------------------------------------------

    def usage_tallies(
        self, start_us: int, end_us: int, provider: str, account_id: str | None
    ) -> list[LocalTally]:
        """Calls, tokens and cost per UTC day x model x key x account, adjustments included."""
        u = t.usage_records.c
        day = (u.event_time_us // DAY_US).label("day")
        groups = [day, u.model, u.api_key_id, u.account_id, u.currency_code]
        query = select(
            *groups,
            func.sum(u.request_count).label("request_count"),
            *(func.sum(getattr(u, name)).label(name) for name in TOKEN_FIELDS),
            func.sum(u.cost_nanos).label("cost_nanos"),
        ).where(u.event_time_us >= start_us, u.event_time_us < end_us)
        if provider:
            query = query.where(u.provider == provider)
        if account_id is not None:
            query = query.where(u.account_id == account_id)
        return [
            LocalTally(
                day_index=int(row.day),
                model=row.model,
                api_key_id=row.api_key_id,
                account_id=row.account_id,
                currency_code=row.currency_code,
                request_count=int(row.request_count),
                usage=TokenUsage(**{name: int(getattr(row, name)) for name in TOKEN_FIELDS}),
                cost_nanos=int(row.cost_nanos),
            )
            for row in self._c.execute(query.group_by(*groups))
        ]

    def calls_between(
        self, start_us: int, end_us: int, provider: str, account_id: str | None, limit: int
    ) -> list[UsageRecord]:
        """The original calls (not adjustments) in a range, at most ``limit``."""
        u = t.usage_records.c
        query = select(t.usage_records).where(
            u.event_time_us >= start_us, u.event_time_us < end_us, u.record_kind == "USAGE"
        )
        if provider:
            query = query.where(u.provider == provider)
        if account_id is not None:
            query = query.where(u.account_id == account_id)
        query = query.order_by(u.event_time_us, u.account_id, u.record_id).limit(limit)
        return [_usage_record(row) for row in self._c.execute(query)]

    def accounts_of_keys(self, api_key_ids: list[str]) -> dict[str, str]:
        """Per API key: the account that recorded the most calls with it."""
        u = t.usage_records.c
        best: dict[str, tuple[int, str]] = {}
        for start in range(0, len(api_key_ids), 500):
            chunk = api_key_ids[start : start + 500]
            rows = self._c.execute(
                select(u.api_key_id, u.account_id, func.count().label("calls"))
                .where(u.api_key_id.in_(chunk))
                .group_by(u.api_key_id, u.account_id)
            )
            for row in rows:
                calls = int(row.calls)
                if row.api_key_id not in best or (calls, row.account_id) > best[row.api_key_id]:
                    best[row.api_key_id] = (calls, row.account_id)
        return {key: account for key, (_, account) in best.items()}

    # Missing-usage policies ------------------------------------------------

    def missing_usage_policies(self, account_id: str | None = None) -> list[MissingUsagePolicy]:
        """Every policy, or those that can apply to one account (its own and any account's)."""
        m = t.missing_usage_policies.c
        query = select(t.missing_usage_policies).order_by(m.account_id, m.provider, m.model)
        if account_id is not None:
            query = query.where(m.account_id.in_(["", account_id]))
        return [
            MissingUsagePolicy(
                account_id=row.account_id,
                provider=row.provider,
                model=row.model,
                estimate_disabled=bool(row.estimate_disabled),
                fallback=Fallback(row.fallback),
                flat_fee_nanos=int(row.flat_fee_nanos),
                currency_code=row.currency_code,
            )
            for row in self._c.execute(query)
        ]

    def put_missing_usage_policy(self, policy: MissingUsagePolicy, now_us: int) -> None:
        m = t.missing_usage_policies.c
        self._c.execute(
            delete(t.missing_usage_policies).where(
                m.account_id == policy.account_id,
                m.provider == policy.provider,
                m.model == policy.model,
            )
        )
        self._c.execute(
            insert(t.missing_usage_policies).values(
                account_id=policy.account_id,
                provider=policy.provider,
                model=policy.model,
                estimate_disabled=policy.estimate_disabled,
                fallback=policy.fallback.value,
                flat_fee_nanos=policy.flat_fee_nanos,
                currency_code=policy.currency_code,
                update_time_us=now_us,
            )
        )

    def delete_missing_usage_policy(self, account_id: str, provider: str, model: str) -> bool:
        m = t.missing_usage_policies.c
        done = self._c.execute(
            delete(t.missing_usage_policies).where(
                m.account_id == account_id, m.provider == provider, m.model == model
            )
        )
        return bool(done.rowcount)

    def delete_budget(self, account_id: str, budget_id: str) -> bool:
        b = t.budgets.c
        done = self._c.execute(
            delete(t.budgets).where(b.account_id == account_id, b.budget_id == budget_id)
        )
        return bool(done.rowcount)

    def budget_usage(self, budget: Budget, start_us: int) -> int:
        """Recorded usage since ``start_us`` (from its 15-minute slice on) plus open holds.

        The period's first slice is counted whole: a rolling window may count up
        to 15 minutes more than it spans, never less.
        """
        r = t.usage_rollups.c
        value = {
            BudgetMetric.COST: func.sum(r.cost_nanos),
            BudgetMetric.TOKENS: func.sum(r.input_tokens + r.output_tokens),
            BudgetMetric.REQUESTS: func.sum(r.request_count),
        }[budget.metric]
        query = select(value).where(
            r.account_id == budget.account_id, r.slice >= start_us // SLICE_US
        )
        if budget.api_key_id:
            query = query.where(r.api_key_id == budget.api_key_id)
        if budget.model:
            query = query.where(r.model == budget.model)
        recorded = int(self._c.execute(query).scalar() or 0)
        h = t.reservations.c
        held_value = {
            BudgetMetric.COST: func.sum(h.amount_nanos),
            BudgetMetric.TOKENS: func.sum(h.input_tokens + h.output_tokens),
            BudgetMetric.REQUESTS: func.count(),
        }[budget.metric]
        held_query = select(held_value).where(
            h.account_id == budget.account_id, h.state == ReservationState.OPEN.value
        )
        if budget.api_key_id:
            held_query = held_query.where(h.api_key_id == budget.api_key_id)
        if budget.model:
            held_query = held_query.where(h.model == budget.model)
        return recorded + int(self._c.execute(held_query).scalar() or 0)

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
        """Record a threshold crossing; False when this period already has it."""
        dialect = self._c.dialect.name
        upsert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(
            t.budget_events
        ).values(
            account_id=account_id,
            event_id=event_id,
            budget_id=budget_id,
            period_start_us=period_start_us,
            threshold_percent=threshold_percent,
            used_value=used,
            limit_value=limit_value,
            create_time_us=now_us,
        )
        done = self._c.execute(upsert.on_conflict_do_nothing())
        return bool(done.rowcount == 1)

    def budget_events(
        self, after: tuple[int, str], account_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        e = t.budget_events.c
        after_time, after_id = after
        query = (
            select(t.budget_events)
            .where(
                or_(
                    e.create_time_us > after_time,
                    and_(e.create_time_us == after_time, e.event_id > after_id),
                )
            )
            .order_by(e.create_time_us, e.event_id)
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(e.account_id == account_id)
        return [dict(row._mapping) for row in self._c.execute(query)]

    # Verification ---------------------------------------------------------

    def verify_ledger(self) -> LedgerReport:
        """Check the ledger's invariants; every problem found is listed."""
        report = LedgerReport()
        e, a, tx, u = t.ledger_entries.c, t.accounts.c, t.ledger_transactions.c, t.usage_records.c
        report.entries_checked = self.count_ledger_entries()
        report.transactions_checked = int(
            self._c.execute(select(func.count()).select_from(t.ledger_transactions)).scalar_one()
        )
        report.usage_records_checked = self.count_usage_records()
        row: Any  # result rows of several shapes below
        # 1. Double entry: each transaction sums to zero per asset.
        unbalanced = self._c.execute(
            select(e.account_id, e.transaction_id, e.asset, func.sum(e.amount).label("total"))
            .group_by(e.account_id, e.transaction_id, e.asset)
            .having(func.sum(e.amount) != 0)
        )
        for row in unbalanced:
            report.problems.append(
                f"transaction {row.account_id}/{row.transaction_id}: {row.asset} entries sum to "
                f"{row.total}, not 0"
            )
        # 2. Every entry belongs to a transaction header.
        orphans = self._c.execute(
            select(func.count())
            .select_from(
                t.ledger_entries.outerjoin(
                    t.ledger_transactions,
                    and_(e.account_id == tx.account_id, e.transaction_id == tx.transaction_id),
                )
            )
            .where(tx.transaction_id.is_(None))
        ).scalar_one()
        if orphans:
            report.problems.append(f"{orphans} ledger entries have no transaction")
        # 3. Each account's cached balances equal the sums of its own entries.
        sums: dict[tuple[str, str], int] = {}
        for row in self._c.execute(
            select(e.ledger_account, e.asset, func.sum(e.amount).label("total")).group_by(
                e.ledger_account, e.asset
            )
        ):
            sums[(row.ledger_account, row.asset)] = int(row.total)
        # Per ledger account, so that each account's check looks only at its own sums.
        assets_of: dict[str, dict[str, int]] = {}
        for (ledger_account, asset), total in sums.items():
            assets_of.setdefault(ledger_account, {})[asset] = total
        accounts_seen: set[str] = set()
        for row in self._c.execute(
            select(a.account_id, a.currency_code, a.balance_nanos, a.request_credits)
        ):
            report.accounts_checked += 1
            accounts_seen.add(row.account_id)
            money = sums.get((row.account_id, row.currency_code), 0)
            credits = sums.get((row.account_id, ASSET_REQUEST_CREDITS), 0)
            if money != row.balance_nanos:
                report.problems.append(
                    f"account {row.account_id}: balance {row.balance_nanos} "
                    f"!= sum of entries {money}"
                )
            if credits != row.request_credits:
                report.problems.append(
                    f"account {row.account_id}: request credits {row.request_credits} "
                    f"!= sum of entries {credits}"
                )
            for asset, total in assets_of.get(row.account_id, {}).items():
                if asset not in (row.currency_code, ASSET_REQUEST_CREDITS) and total != 0:
                    report.problems.append(
                        f"account {row.account_id}: entries in foreign asset {asset}"
                    )
        for (ledger_account, asset), total in sums.items():
            if ledger_account.startswith("@"):
                report.system_balances[(ledger_account, asset)] = total
            elif ledger_account not in accounts_seen:
                report.problems.append(f"entries for unknown account {ledger_account} ({asset})")
        # 4. The usage records of each transaction cost what it debited the account
        # (a correction's two rows together, every other transaction's one row).
        debited = (
            select(
                e.account_id,
                e.transaction_id,
                func.sum(e.amount).label("amount"),
            )
            .where(e.ledger_account == e.account_id, e.asset != ASSET_REQUEST_CREDITS)
            .group_by(e.account_id, e.transaction_id)
            .subquery()
        )
        costs = (
            select(
                u.account_id,
                u.transaction_id,
                func.min(u.record_id).label("record_id"),
                func.sum(u.cost_nanos).label("cost_nanos"),
            )
            .group_by(u.account_id, u.transaction_id)
            .subquery()
        )
        mismatched = self._c.execute(
            select(costs.c.account_id, costs.c.record_id, costs.c.cost_nanos, debited.c.amount)
            .select_from(
                costs.outerjoin(
                    debited,
                    and_(
                        costs.c.account_id == debited.c.account_id,
                        costs.c.transaction_id == debited.c.transaction_id,
                    ),
                )
            )
            .where(func.coalesce(debited.c.amount, 0) != -costs.c.cost_nanos)
        )
        for row in mismatched:
            report.problems.append(
                f"usage record {row.account_id}/{row.record_id}: cost {row.cost_nanos} but "
                f"its transaction debited {-(row.amount or 0)}"
            )
        return report


DAY_US = 86_400_000_000


_SOURCE_SUMS = (
    "estimated_request_count",
    "estimated_cost_nanos",
    "missing_request_count",
    "missing_cost_nanos",
)


def _source_sums(columns: Any) -> list[Any]:
    """The estimated and missing parts of a summary's counts and cost (rollups keep the source)."""
    sums = []
    for source in (UsageSource.ESTIMATED, UsageSource.MISSING):
        prefix = source.value.lower()
        for name, column in (
            ("request_count", columns.request_count),
            ("cost_nanos", columns.cost_nanos),
        ):
            sums.append(
                func.sum(case((columns.usage_source == source.value, column), else_=0)).label(
                    f"{prefix}_{name}"
                )
            )
    return sums


# The sources the review queue looks at, as in the partial index's predicate.
_REVIEW_SOURCES = (UsageSource.ESTIMATED.value, UsageSource.MISSING.value)


def _after(u: Any, after: tuple[int, str, str]) -> Any:
    """Rows after a (event time, account, record id) key: the keyset of exports and queues."""
    after_time, after_account, after_id = after
    return or_(
        u.event_time_us > after_time,
        and_(
            u.event_time_us == after_time,
            or_(
                u.account_id > after_account,
                and_(u.account_id == after_account, u.record_id > after_id),
            ),
        ),
    )


def _corrected(u: Any) -> Any:
    """Whether a row has an ADJUSTMENT of source CORRECTED linked to it (a correlated
    EXISTS over ix_usage_records_corrects)."""
    fix = t.usage_records.alias("fix")
    return exists().where(
        fix.c.account_id == u.account_id,
        fix.c.corrects_record_id == u.record_id,
        fix.c.record_kind == "ADJUSTMENT",
        fix.c.usage_source == UsageSource.CORRECTED.value,
    )


class SqlDatabase:
    """Opens transactions on an engine; the service layer decides their extent."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock: WriterLock | None = write_lock_for(engine)

    @contextmanager
    def write(self) -> Iterator[SqlStore]:
        """A read-write transaction, committed when the block exits normally.

        Raises DuplicateKey when a concurrent transaction took a unique key
        (the caller retries), Unavailable when the database cannot be reached.
        """
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with _translate_errors(), self.engine.begin() as connection:
                yield SqlStore(connection)
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def read(self) -> Iterator[SqlStore]:
        """A read-only transaction (a consistent snapshot on PostgreSQL)."""
        with _translate_errors(), self.engine.connect() as connection:
            connection = connection.execution_options(metering_readonly=True)
            with connection.begin():
                yield SqlStore(connection)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # unreachable, pool exhausted, timed out: not serving
            return False


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)[:200]) from exc
    except OperationalError as exc:
        if exc.connection_invalidated or _looks_disconnected(exc):
            raise Unavailable("DATABASE_UNAVAILABLE", "the database is unreachable; retry") from exc
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("DATABASE_UNAVAILABLE", "the database is unreachable; retry") from exc
        raise


def _looks_disconnected(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in ("connection", "server closed", "could not connect", "terminating", "timeout")
    )
