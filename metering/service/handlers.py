"""The use cases of metering. Each public method is one RPC's work.

Handlers validate and bound their input, then open exactly the transactions
they need through the :class:`~metering.service.ports.Database`. Usage
records go through :meth:`Metering.write_usage_batch`, the one place that
turns a batch of validated, priced records into one transaction, so that
concurrent calls can share a commit.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from metering import telemetry
from metering.domain.accounts import (
    PRICE_ADJUSTMENT_BPS_MAX,
    PRICE_ADJUSTMENT_BPS_MIN,
    Account,
    BillingMode,
    Charge,
    UnpricedPolicy,
    charge_for,
    is_exhausted,
)
from metering.domain.budgets import (
    BUDGETS_PER_ACCOUNT_MAX,
    ROLLING_SECONDS_MAX,
    Budget,
    BudgetMetric,
    BudgetPeriod,
    BudgetStatus,
    measure,
)
from metering.domain.catalogue import REQUEST_CREDITS_PER_CALL_MAX
from metering.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MeteringError,
    NotFound,
    Unavailable,
    Violations,
)
from metering.domain.extraction import RAW_BODY_BYTES_MAX, ResponseFormat, extract_usage
from metering.domain.ledger import TransactionKind, grant_entries, usage_entries
from metering.domain.missing import Fallback, MissingUsagePolicy, policy_for
from metering.domain.money import (
    AMOUNT_NANOS_MAX,
    AMOUNT_UNITS_MAX,
    is_currency_code,
)
from metering.domain.pricing import Price, PriceBook, price_not_found
from metering.domain.records import (
    Net,
    NewResult,
    NewTransaction,
    UsageRecord,
    net_of,
    supersede,
)
from metering.domain.reservations import (
    TTL_DEFAULT_US,
    TTL_MAX_US,
    ExpiryPolicy,
    Holds,
    Reservation,
    ReservationState,
)
from metering.domain.summary import Aggregate, SummaryFilter, regroup, segments
from metering.domain.usage import TOKENS_PER_RECORD_MAX, TokenUsage, UsageSource
from metering.service import validation as val
from metering.service.balances import (
    REQUEST_CREDITS_MAX,
    checked_balances,
    request_id_conflict,
)
from metering.service.balances import in_range as _in_range
from metering.service.commands import (
    Authorization,
    AuthorizeUsage,
    Balance,
    CreateAccount,
    Estimate,
    EstimateTokens,
    GrantCredits,
    GrantResult,
    RecordResult,
    RecordUsage,
    Release,
    SummaryQuery,
    UpdateAccount,
)
from metering.service.corrections import Corrections
from metering.service.ports import Clock, Database, Store, StoredResultLike
from metering.storage.store import DuplicateKey
from metering.tokens.counter import TextCount, count_text
from metering.tokens.formats import RequestFormat, count_request
from metering.tokens.registry import TokenizerRegistry

log = logging.getLogger(__name__)

SUMMARY_RANGE_MAX_US = 400 * 24 * 3600 * 1_000_000
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
# A unique-key race (two transactions inserting the same idempotency key)
# resolves on the first retry; more attempts only guard against bad luck.
WRITE_ATTEMPTS_MAX = 3


BATCH_RECORDS_MAX = 1000
ACCOUNT_CACHE_MAX = 100_000

_OP_RECORD = "RecordUsage"
_OP_AUTHORIZE = "AuthorizeUsage"
_BUDGET_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OP_GRANT = "GrantCredits"


@dataclass(frozen=True)
class SummaryPage:
    rows: list[Aggregate]
    totals: Aggregate
    next_page_token: str
    group_by: tuple[str, ...]


@dataclass(frozen=True)
class PendingRecord:
    """A validated RecordUsage, priced (or carrying the pricing error) before its transaction."""

    command: RecordUsage
    payload_sha256: str
    account: Account
    mode: BillingMode
    event_time_us: int
    usage_source: UsageSource
    usage: TokenUsage
    streamed: bool
    price: Price | None
    pricing_error: MeteringError | None
    # For a MISSING record: the policy that says what it is charged.
    missing_policy: MissingUsagePolicy | None = None
    # The price revision the record was priced at; the write re-prices a
    # record whose revision is no longer the database's.
    price_revision: int = 0


# Values that are never dataclasses: _shallow skips the (slow, failing) attribute lookup.
_SCALARS = frozenset({str, int, bool, float, bytes, type(None)})
# json.dumps(sort_keys=True, separators=(",", ":"), default=str), one encoder for every call.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _shallow(value: Any) -> dict[str, Any]:
    """A dataclass as a dict, nested dataclasses (token usage) as dicts too.

    ``dataclasses.asdict`` deep-copies every value and was a measurable part of
    the per-record cost on the write path; one level is all these hold.
    """
    out: dict[str, Any] = {}
    for name in value.__dataclass_fields__:
        item = getattr(value, name)
        if type(item) not in _SCALARS and hasattr(item, "__dataclass_fields__"):
            item = {n: getattr(item, n) for n in item.__dataclass_fields__}
        out[name] = item
    return out


def _payload_sha256(payload: dict[str, Any]) -> str:
    """The idempotency fingerprint of a request.

    Fields at their zero value are left out, so that a field added to a
    command in a later version (with a zero default) does not turn the retry
    of a request recorded before the upgrade into a conflict.
    """
    present = {k: v for k, v in payload.items() if v not in (None, False, "", 0, {}, [], ())}
    canonical = _CANONICAL_JSON.encode(present)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_id() -> str:
    return uuid.uuid4().hex


class Metering:
    """The metering use cases over a database, a price book and a clock."""

    def __init__(
        self,
        db: Database,
        prices: Callable[[], PriceBook],
        clock: Clock,
        tokenizers: TokenizerRegistry | None = None,
    ) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock
        self._tokenizers = tokenizers or TokenizerRegistry()
        self._account_cache: dict[str, Account] = {}
        self._key_mode_cache: dict[tuple[str, str], BillingMode | None] = {}
        self.corrections = Corrections(db, prices, clock)
        # Where committed budget crossings go: metrics and logs here; the writer
        # process hands them back to the server, which reports them.
        self.on_budget_crossings: Callable[[Sequence[BudgetCrossing]], None] = (
            report_budget_crossings
        )

    @property
    def database(self) -> Database:
        return self._db

    @property
    def prices(self) -> Callable[[], PriceBook]:
        return self._prices

    @property
    def clock(self) -> Clock:
        return self._clock

    # Accounts and credits -------------------------------------------------

    def create_account(self, cmd: CreateAccount) -> Account:
        """Create an account with zero balances; ALREADY_EXISTS if the id is taken."""
        v = Violations()
        val.check_new_account_id(v, cmd.account_id)
        if not is_currency_code(cmd.currency_code):
            v.add("currency_code", "currency_code must be an ISO 4217 code such as USD")
        account = Account(
            account_id=cmd.account_id,
            currency_code=cmd.currency_code,
            billing_mode=cmd.billing_mode,
            allow_negative_balance=cmd.allow_negative_balance,
            create_time_us=self._clock.now_us(),
            unpriced_policy=cmd.unpriced_policy,
            price_adjustment_bps=cmd.price_adjustment_bps,
            request_asset=cmd.request_asset,
            default_request_price_nanos=cmd.default_request_price_nanos,
            default_request_credits=cmd.default_request_credits,
            tenant_id=cmd.tenant_id,
            reservation_expiry_policy=cmd.reservation_expiry_policy,
            time_zone=cmd.time_zone or "UTC",
        )
        _check_settings(v, account)
        v.raise_if_any()
        try:
            with self._db.write() as store:
                if store.get_account(cmd.account_id) is not None:
                    raise _account_exists(cmd.account_id)
                store.insert_account(account)
        except DuplicateKey:
            raise _account_exists(cmd.account_id) from None
        return account

    def update_account(self, cmd: UpdateAccount) -> Account:
        """Change the named billing settings of an account; NOT_FOUND if it does not exist."""
        v = Violations()
        val.check_account_id(v, cmd.account_id)
        unknown = set(cmd.changes) - _SETTINGS
        for name in sorted(unknown):
            v.add("update_mask", f"{name!r} cannot be updated")
        if not cmd.changes:
            v.add("update_mask", "name at least one field to update")
        v.raise_if_any()
        with self._db.write() as store:
            account = store.get_account(cmd.account_id, for_update=True)
            if account is None:
                raise _account_not_found(cmd.account_id)
            updated = replace(account, **cmd.changes)  # type: ignore[arg-type]
            _check_settings(v, updated)
            v.raise_if_any()
            store.update_account_settings(updated)
        return updated

    def set_api_key_billing_mode(
        self, account_id: str, api_key_id: str, mode: BillingMode | None
    ) -> BillingMode:
        """Override (None: inherit) the billing mode of one API key; return the mode in effect."""
        v = Violations()
        val.check_account_id(v, account_id)
        if not api_key_id:
            v.add("api_key_id", "api_key_id is required")
        val.check_name(v, "api_key_id", api_key_id)
        v.raise_if_any()
        with self._db.write() as store:
            account = store.get_account(account_id, for_update=True)
            if account is None:
                raise _account_not_found(account_id)
            store.set_api_key_mode(account_id, api_key_id, mode, self._clock.now_us())
        return mode or account.billing_mode

    def grant_credits(self, cmd: GrantCredits) -> GrantResult:
        """Add money and/or request credits as a balanced ledger transaction; idempotent."""
        v = Violations()
        val.check_account_id(v, cmd.account_id)
        val.check_request_id(v, cmd.request_id)
        if cmd.amount_nanos < 0:
            v.add("amount", "amount must not be negative (corrections are separate transactions)")
        elif cmd.amount_nanos > AMOUNT_NANOS_MAX:
            v.add("amount", f"amount must be at most {AMOUNT_UNITS_MAX} units")
        if cmd.amount_nanos and not is_currency_code(cmd.currency_code):
            v.add("amount.currency_code", "currency_code must be an ISO 4217 code")
        if cmd.request_credits < 0:
            v.add("request_credits", "request_credits must not be negative")
        elif cmd.request_credits > REQUEST_CREDITS_MAX:
            v.add("request_credits", f"request_credits must be at most {REQUEST_CREDITS_MAX}")
        if cmd.amount_nanos == 0 and cmd.request_credits == 0 and not v.items:
            v.add("amount", "grant a positive amount and/or request_credits")
        val.check_name(v, "reason", cmd.reason, val.REASON_LENGTH_MAX)
        v.raise_if_any()
        payload = _payload_sha256(asdict(cmd))
        for attempt in range(WRITE_ATTEMPTS_MAX):
            try:
                with self._db.write() as store:
                    return self._grant_in(store, cmd, payload)
            except DuplicateKey:
                if attempt == WRITE_ATTEMPTS_MAX - 1:
                    raise
        raise AssertionError("unreachable")

    def _grant_in(self, store: Store, cmd: GrantCredits, payload: str) -> GrantResult:
        account = store.get_account(cmd.account_id, for_update=True)
        if account is None:
            raise _account_not_found(cmd.account_id)
        stored = store.get_stored_result(cmd.account_id, cmd.request_id)
        if stored is not None:
            if stored.operation != _OP_GRANT or stored.payload_sha256 != payload:
                raise request_id_conflict(cmd.request_id)
            return GrantResult(**{**json.loads(stored.result_json), "replayed": True})
        if cmd.amount_nanos and cmd.currency_code != account.currency_code:
            raise FailedPrecondition(
                "CURRENCY_MISMATCH",
                f"account {cmd.account_id} is in {account.currency_code}, not {cmd.currency_code}",
            )
        balance, credits = checked_balances(
            store, account.account_id, cmd.amount_nanos, cmd.request_credits
        )
        now = self._clock.now_us()
        transaction_id = _new_id()
        store.append_transaction(
            account_id=account.account_id,
            transaction_id=transaction_id,
            kind=TransactionKind.GRANT,
            request_id=cmd.request_id,
            reason=cmd.reason,
            now_us=now,
            entries=grant_entries(
                account.account_id, account.currency_code, cmd.amount_nanos, cmd.request_credits
            ),
        )
        store.set_balances(account.account_id, balance, credits)
        result = GrantResult(transaction_id, balance, account.currency_code, credits)
        store.store_result(
            account.account_id, cmd.request_id, _OP_GRANT, payload, json.dumps(asdict(result)), now
        )
        return result

    def get_balance(self, account_id: str) -> Balance:
        """The account's balances; NOT_FOUND for an unknown account."""
        v = Violations()
        val.check_account_id(v, account_id)
        v.raise_if_any()
        with self._db.read() as store:
            account = store.get_account(account_id)
            if account is None:
                raise _account_not_found(account_id)
            balance, credits = store.get_balances(account_id)
            held_nanos, held_credits = store.get_holds(account_id)
        return Balance(
            account_id=account_id,
            currency_code=account.currency_code,
            billing_mode=account.billing_mode,
            allow_negative_balance=account.allow_negative_balance,
            balance_nanos=balance,
            held_nanos=held_nanos,
            request_credits=credits,
            balance_exhausted=is_exhausted(account, balance, credits),
            held_credits=held_credits,
        )

    # Usage ------------------------------------------------------------------

    def record_usage(self, cmd: RecordUsage) -> RecordResult:
        """Record one call's usage and debit its cost; idempotent on (account, request_id).

        Returns only after the transaction committed. Raises InvalidArgument,
        NotFound, FailedPrecondition (PRICE_NOT_FOUND) or AlreadyExists
        (REQUEST_ID_CONFLICT); on any error nothing is written.
        """
        result = self.write_usage_batch([self.prepare_record(cmd)])[0]
        if isinstance(result, MeteringError):
            raise result
        return result

    def record_usage_batch(
        self, cmds: Sequence[RecordUsage | MeteringError]
    ) -> list[RecordResult | MeteringError]:
        """Record many calls in one transaction; a result or an error per call, in order.

        An entry that is already an error (it failed conversion) stays one; a
        call that fails validation or pricing gets its error and does not
        fail the others.
        """
        check_batch_size(len(cmds))
        prepared = self.prepare_many(cmds)
        pending = [item for item in prepared if isinstance(item, PendingRecord)]
        outcomes = iter(self.write_usage_batch(pending) if pending else [])
        return [item if isinstance(item, MeteringError) else next(outcomes) for item in prepared]

    def prepare_many(
        self, cmds: Sequence[RecordUsage | MeteringError]
    ) -> list[PendingRecord | MeteringError]:
        """Prepare each call; an entry that is or becomes an error stays in its place."""
        self._load_snapshots(cmds)
        prepared: list[PendingRecord | MeteringError] = []
        for cmd in cmds:
            if isinstance(cmd, MeteringError):
                prepared.append(cmd)
                continue
            try:
                prepared.append(self.prepare_record(cmd))
            except MeteringError as exc:
                prepared.append(exc)
        return prepared

    def prepare_record(self, cmd: RecordUsage) -> PendingRecord:
        """Validate, bound and price a record outside any write transaction."""
        now = self._clock.now_us()
        v = Violations()
        val.check_account_id(v, cmd.account_id)
        val.check_request_id(v, cmd.request_id)
        val.check_model(v, cmd.model)
        val.check_provider(v, cmd.provider)
        val.check_name(v, "api_key_id", cmd.api_key_id)
        val.check_name(v, "service", cmd.service)
        val.check_labels(v, cmd.labels)
        if cmd.usage is not None:
            cmd.usage.check(v)
        if cmd.event_time_us is not None:
            val.check_time(v, "event_time", cmd.event_time_us, now)
        if len(cmd.reservation_id) > 64 or not cmd.reservation_id.isprintable():
            v.add("reservation_id", "reservation_id must be at most 64 printable characters")
        _check_estimate_inputs(v, cmd)
        v.raise_if_any()
        account, key_mode = self._account_and_key_mode(cmd.account_id, cmd.api_key_id)
        usage, source, streamed, policy = self._usage_of(cmd)
        mode = key_mode or account.billing_mode
        event_time = cmd.event_time_us if cmd.event_time_us is not None else now
        book = self._prices()
        price, pricing_error = _price_of(book, cmd, account, mode, event_time)
        payload = _shallow(cmd)
        # A body's digest stands for the body in the idempotency fingerprint.
        for name in ("response_json", "request_json"):
            if payload.get(name):
                payload[name] = hashlib.sha256(payload[name]).hexdigest()
        return PendingRecord(
            command=cmd,
            payload_sha256=_payload_sha256(payload),
            streamed=streamed,
            account=account,
            mode=mode,
            event_time_us=event_time,
            usage_source=source,
            usage=usage,
            price=price,
            pricing_error=pricing_error,
            price_revision=book.revision,
            missing_policy=policy,
        )

    def _account_and_key_mode(
        self, account_id: str, api_key_id: str
    ) -> tuple[Account, BillingMode | None]:
        """The account and its API key's billing-mode override, from memory when known.

        The snapshot may be stale: the write re-reads both under the account's
        row lock and re-prices a record whose settings changed meanwhile, so a
        cached value never decides a charge. Accounts are never deleted, so a
        cached account always exists.
        """
        key = (account_id, api_key_id)
        account = self._account_cache.get(account_id)
        if account is not None and key in self._key_mode_cache:
            return account, self._key_mode_cache[key]
        with self._db.read() as store:
            account = store.get_account(account_id)
            if account is None:
                raise _account_not_found(account_id)
            mode = store.get_api_key_mode(account_id, api_key_id) if api_key_id else None
        self._remember(account, {key: mode})
        return account, mode

    def _load_snapshots(self, cmds: Sequence[RecordUsage | MeteringError]) -> None:
        """Read the account snapshots that several calls lack in one transaction, not
        one each (prepare_record reads what is still missing, and reports its errors)."""
        pairs = {
            (cmd.account_id, cmd.api_key_id)
            for cmd in cmds
            if not isinstance(cmd, MeteringError)
            and (
                cmd.account_id not in self._account_cache
                or (cmd.account_id, cmd.api_key_id) not in self._key_mode_cache
            )
        }
        if len(pairs) < 2:
            return
        try:
            with self._db.read() as store:
                accounts = store.get_accounts(sorted({account_id for account_id, _ in pairs}))
                modes = store.get_api_key_modes(sorted(pair for pair in pairs if pair[1]))
        except MeteringError:
            return
        for account in accounts.values():
            self._remember(account, {})
        self._key_mode_cache.update(
            {pair: modes.get(pair) for pair in pairs if pair[0] in accounts}
        )

    def _remember(
        self, account: Account, key_modes: dict[tuple[str, str], BillingMode | None]
    ) -> None:
        # Bounded: a burst of new accounts or keys must not grow memory without end.
        if len(self._account_cache) >= ACCOUNT_CACHE_MAX:
            self._account_cache.clear()
        if len(self._key_mode_cache) >= ACCOUNT_CACHE_MAX:
            self._key_mode_cache.clear()
        self._account_cache[account.account_id] = account
        self._key_mode_cache.update(key_modes)

    def _usage_of(
        self, cmd: RecordUsage
    ) -> tuple[TokenUsage, UsageSource, bool, MissingUsagePolicy | None]:
        """The usage to record and how it is known: as sent, extracted, estimated or missing.

        A provider block of all zeros for a call that produced a completion
        is a provider bug (or a stream cut short), not a free call: it counts
        as missing. A missing call is estimated from the texts the relay sent,
        unless its policy says not to; otherwise it is MISSING, and the
        returned policy says what it is charged.
        """
        if cmd.usage is not None:
            return cmd.usage, UsageSource.REPORTED, cmd.streamed, None
        streamed = cmd.streamed
        # Without a completion text, the output is known only from a response that shows
        # none; a prompt alone would estimate a call that produced text as free output.
        completion_known = bool(cmd.completion_text)
        if cmd.response_json:
            fmt = ResponseFormat(cmd.response_format) if cmd.response_format else None
            extracted = extract_usage(cmd.response_json, fmt, field="response_json")
            streamed = cmd.streamed or extracted.streamed
            if extracted.usage is not None and not (
                extracted.usage == TokenUsage() and extracted.has_completion
            ):
                return extracted.usage, UsageSource.REPORTED, streamed, None
            completion_known = completion_known or not extracted.has_completion
        with self._db.read() as store:
            policies = store.missing_usage_policies(cmd.account_id)
        policy = policy_for(policies, cmd.account_id, cmd.provider, cmd.model)
        prompt_known = bool(cmd.request_json or cmd.prompt_text)
        if prompt_known and completion_known and not policy.estimate_disabled:
            return self._estimated_usage(cmd), UsageSource.ESTIMATED, streamed, None
        return TokenUsage(), UsageSource.MISSING, streamed, policy

    def _estimated_usage(self, cmd: RecordUsage) -> TokenUsage:
        """Count the call's tokens as EstimateTokens would: the prompt and the completion."""
        if cmd.request_json:
            fmt = RequestFormat[cmd.request_format] if cmd.request_format else None
            input_tokens = count_request(
                cmd.model, cmd.request_json, fmt, registry=self._tokenizers
            ).input_tokens
        else:
            input_tokens = count_text(cmd.model, cmd.prompt_text, self._tokenizers).tokens
        output_tokens = count_text(cmd.model, cmd.completion_text, self._tokenizers).tokens
        return TokenUsage(
            input_tokens=min(input_tokens, TOKENS_PER_RECORD_MAX),
            output_tokens=min(output_tokens, TOKENS_PER_RECORD_MAX),
        )

    def write_usage_batch(
        self, batch: Sequence[PendingRecord]
    ) -> list[RecordResult | MeteringError]:
        """Write prepared records in one transaction; a result or an error per record.

        The batch costs a fixed number of statements whatever its size: one
        query locks every account involved (in id order, so concurrent
        batches cannot deadlock), one reads their idempotency keys, the rows
        are inserted in bulk, and each account's balance is written once
        with the sum of its records, while every record still gets its own
        ledger transaction and sees the running balance. A record's own
        error (conflict, no price, not found) writes nothing for it and does
        not fail the others.
        """
        order = sorted(range(len(batch)), key=lambda i: batch[i].account.account_id)
        for attempt in range(WRITE_ATTEMPTS_MAX):
            results: list[RecordResult | MeteringError] = [
                MeteringError("INTERNAL", "not written")
            ] * len(batch)
            try:
                with self._db.write() as store:
                    batch = self._priced_at(store.get_revision("prices"), batch)
                    writes = _BatchWrites(store, batch, self._clock.now_us())
                    for index in order:
                        results[index] = self._write_record(writes, batch[index])
                    writes.flush()
                    results = _with_budgets(store, writes, batch, results)
                # Committed: only now are the crossings real (a rolled-back batch had none).
                if writes.crossings:
                    self.on_budget_crossings(writes.crossings)
                for account in writes.accounts.values():
                    self._remember(account, {})
                self._key_mode_cache.update(writes.key_modes)
                return results
            except DuplicateKey:
                if attempt == WRITE_ATTEMPTS_MAX - 1:
                    raise Unavailable(
                        "WRITE_CONFLICT", "concurrent writes kept conflicting; retry"
                    ) from None
        raise AssertionError("unreachable")

    def _priced_at(self, revision: int, batch: Sequence[PendingRecord]) -> Sequence[PendingRecord]:
        """Re-price records priced before the latest price change, so that a
        change made through any process applies to every record committed
        after it."""
        stale = [p for p in batch if p.price_revision and p.price_revision != revision]
        if not stale:
            return batch
        refresh = getattr(self._prices, "refresh", None)
        if refresh is not None:
            refresh()
        book = self._prices()
        repriced: list[PendingRecord] = []
        for pending in batch:
            if pending.price_revision in (0, revision):
                repriced.append(pending)
                continue
            price, error = _price_of(
                book, pending.command, pending.account, pending.mode, pending.event_time_us
            )
            repriced.append(
                replace(pending, price=price, pricing_error=error, price_revision=book.revision)
            )
        return repriced

    def _write_record(
        self, writes: _BatchWrites, pending: PendingRecord
    ) -> RecordResult | MeteringError:
        cmd = pending.command
        account_id = pending.account.account_id
        locked = writes.accounts.get(account_id)
        if locked is None:
            return _account_not_found(account_id)
        # Settings as of the lock: prepare_record may have used a stale snapshot.
        account = locked
        mode = writes.key_modes.get((account_id, cmd.api_key_id)) or account.billing_mode
        if mode is not pending.mode or account != pending.account:
            price, error = _price_of(self._prices(), cmd, account, mode, pending.event_time_us)
            pending = replace(pending, account=account, mode=mode, price=price, pricing_error=error)
        stored = writes.stored_result(account_id, cmd.request_id)
        if stored is not None:
            if stored.operation != _OP_RECORD or stored.payload_sha256 != pending.payload_sha256:
                return request_id_conflict(cmd.request_id)
            data = json.loads(stored.result_json)
            data["usage_source"] = UsageSource(data["usage_source"])
            # Results stored before the usage was part of them have none.
            data["usage"] = TokenUsage(**data["usage"]) if data.get("usage") else None
            return RecordResult(**{**data, "replayed": True})
        if pending.pricing_error is not None:
            return pending.pricing_error
        reservation: Reservation | None = None
        if cmd.reservation_id:
            reservation = writes.store.get_reservation(account_id, cmd.reservation_id)
            if reservation is None:
                return NotFound(
                    "RESERVATION_NOT_FOUND",
                    f"account {account_id!r} has no reservation {cmd.reservation_id!r}",
                    {"reservation_id": cmd.reservation_id},
                )
        price = pending.price
        charge = charge_for(account, pending.mode, price, pending.usage, batch=cmd.batch)
        fallback = ""
        if pending.missing_policy is not None:
            charge, fallback = _missing_charge(pending.missing_policy, account, charge, reservation)
        try:
            balance, credits = writes.debit(account_id, charge.cost_nanos, charge.request_credits)
        except FailedPrecondition as exc:
            return exc
        now = writes.now_us
        transaction_id, record_id = _new_id(), _new_id()
        corrects: UsageRecord | None = None
        corrects_net: Net | None = None
        if reservation is not None and reservation.state is ReservationState.OPEN:
            writes.store.resolve_reservation(
                account_id, reservation.reservation_id, ReservationState.CAPTURED, now, record_id
            )
            writes.release_hold(account_id, reservation.amount_nanos, reservation.request_credits)
        elif (
            reservation is not None
            and reservation.state is ReservationState.EXPIRED
            and reservation.record_id is not None
        ):
            # The hold expired and was captured as an estimate; the first report is the
            # real figure for the same call: it supersedes the estimate. A second report
            # against the same hold, or any report against a hold a report already
            # captured, is a call of its own.
            estimate = writes.store.get_usage_record(account_id, reservation.record_id)
            if estimate is not None:
                net = net_of(
                    estimate,
                    writes.store.adjustments_of(account_id, [estimate.record_id]).get(
                        estimate.record_id, []
                    ),
                )
                if not net.reported_after and not writes.reported(estimate.record_id):
                    corrects, corrects_net = estimate, net
        record = UsageRecord(
            account_id=account_id,
            record_id=record_id,
            request_id=cmd.request_id,
            transaction_id=transaction_id,
            event_time_us=pending.event_time_us,
            record_time_us=now,
            provider=cmd.provider.lower() or (price.provider if price else ""),
            model=cmd.model,
            api_key_id=cmd.api_key_id,
            service=cmd.service,
            streamed=pending.streamed,
            usage_source=pending.usage_source,
            usage=pending.usage,
            currency_code=account.currency_code,
            cost_nanos=charge.cost_nanos,
            request_credits=charge.request_credits,
            price_id=price.price_id if price else "",
            price_version=price.version if price else 0,
            labels=dict(cmd.labels),
            billing_mode=pending.mode.value,
            unpriced=charge.unpriced,
            batch=cmd.batch,
        )
        reversal: UsageRecord | None = None
        if corrects is not None and corrects_net is not None:
            writes.mark_reported(corrects.record_id)
            reversal, record = supersede(
                corrects, corrects_net, record, f"reversal:{transaction_id}"
            )
            # The ledger moves only the difference; the balance was debited for the estimate.
            balance, credits = writes.debit(
                account_id, -corrects_net.cost_nanos, -corrects_net.request_credits
            )
        result = RecordResult(
            record_id=record_id,
            cost_nanos=charge.cost_nanos,
            currency_code=account.currency_code,
            balance_nanos=balance,
            request_credits_charged=charge.request_credits,
            request_credits=credits,
            usage_source=pending.usage_source,
            price_id=record.price_id,
            price_version=record.price_version,
            balance_exhausted=is_exhausted(account, balance, credits),
            unpriced=charge.unpriced,
            usage=pending.usage,
            reservation_held_nanos=reservation.amount_nanos if reservation else 0,
            reservation_exceeded=(
                reservation is not None and charge.cost_nanos > reservation.amount_nanos
            ),
            missing_fallback=fallback,
        )
        moved_nanos, moved_credits = charge.cost_nanos, charge.request_credits
        if reversal is not None:
            moved_nanos += reversal.cost_nanos
            moved_credits += reversal.request_credits
        writes.add(
            NewTransaction(
                account_id=account_id,
                transaction_id=transaction_id,
                kind=TransactionKind.USAGE if corrects is None else TransactionKind.CORRECTION,
                request_id=cmd.request_id,
                reason="" if corrects is None else "late report supersedes the expiry estimate",
                now_us=now,
                entries=usage_entries(
                    account_id, account.currency_code, moved_nanos, moved_credits
                ),
                corrects_transaction_id=corrects.transaction_id if corrects else None,
            ),
            record,
            NewResult(
                account_id=account_id,
                request_id=cmd.request_id,
                operation=_OP_RECORD,
                payload_sha256=pending.payload_sha256,
                result_json=json.dumps(
                    {**_shallow(result), "usage_source": result.usage_source.value}
                ),
                now_us=now,
            ),
            reversal,
        )
        return result

    # Reservations -----------------------------------------------------------

    def authorize_usage(self, cmd: AuthorizeUsage) -> Authorization:
        """Hold an amount against the available balance, or deny; idempotent on request_id.

        The amount is the exact ``amount_nanos``, or the worst-case charge of
        the call estimated from its raw request body or token counts. A
        prepaid account is ALLOWED only if balance minus open holds covers
        it; a postpaid account always is. A denial writes only its
        idempotency record.
        """
        now = self._clock.now_us()
        v = Violations()
        val.check_account_id(v, cmd.account_id)
        val.check_request_id(v, cmd.request_id)
        if cmd.model:
            val.check_model(v, cmd.model)
        val.check_provider(v, cmd.provider)
        val.check_name(v, "api_key_id", cmd.api_key_id)
        if cmd.amount_nanos is not None and not 0 <= cmd.amount_nanos <= AMOUNT_NANOS_MAX:
            v.add("amount", f"amount must be in [0, {AMOUNT_UNITS_MAX}] units")
        for name in ("input_tokens", "max_output_tokens"):
            if not 0 <= getattr(cmd, name) <= TOKENS_PER_RECORD_MAX:
                v.add(name, f"{name} must be in [0, {TOKENS_PER_RECORD_MAX}]")
        if cmd.ttl_us is not None and not 0 < cmd.ttl_us <= TTL_MAX_US:
            v.add("ttl", "ttl must be positive and at most 24 hours")
        if cmd.amount_nanos is None and not cmd.model:
            v.add("model", "model is required to estimate the hold (or send amount)")
        v.raise_if_any()
        with self._db.read() as store:
            account = store.get_account(cmd.account_id)
            if account is None:
                raise _account_not_found(cmd.account_id)
            key_mode = (
                store.get_api_key_mode(account.account_id, cmd.api_key_id)
                if cmd.api_key_id
                else None
            )
        if cmd.amount_nanos is not None and cmd.currency_code != account.currency_code:
            raise FailedPrecondition(
                "CURRENCY_MISMATCH",
                f"account {cmd.account_id} is in {account.currency_code}, not {cmd.currency_code}",
            )
        held_nanos, held_credits, usage, price = self._hold_for(
            cmd, account, key_mode or account.billing_mode, now
        )
        payload = asdict(cmd)
        if cmd.request_json:
            payload["request_json"] = hashlib.sha256(cmd.request_json).hexdigest()
        payload_sha256 = _payload_sha256(payload)
        for attempt in range(WRITE_ATTEMPTS_MAX):
            try:
                with self._db.write() as store:
                    return self._authorize_in(
                        store, cmd, account, payload_sha256, held_nanos, held_credits, usage, price
                    )
            except DuplicateKey:
                if attempt == WRITE_ATTEMPTS_MAX - 1:
                    raise
        raise AssertionError("unreachable")

    def _hold_for(
        self, cmd: AuthorizeUsage, account: Account, mode: BillingMode, now_us: int
    ) -> tuple[int, int, TokenUsage, Price | None]:
        """The amount and credits to hold, with the usage and price they assume."""
        price = (
            self._prices().find(
                cmd.provider, cmd.model, account.currency_code, now_us, account.account_id
            )
            if cmd.model
            else None
        )
        if cmd.amount_nanos is not None:
            return cmd.amount_nanos, 0, TokenUsage(), price
        input_tokens, output_limit = cmd.input_tokens, cmd.max_output_tokens
        if cmd.request_json:
            fmt = RequestFormat[cmd.request_format] if cmd.request_format else None
            counted = count_request(cmd.model, cmd.request_json, fmt, registry=self._tokenizers)
            input_tokens = counted.input_tokens
            output_limit = output_limit or counted.max_output_tokens or 0
        if not output_limit:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "max_output_tokens",
                        "max_output_tokens is required to bound the hold (or send amount)",
                    )
                ]
            )
        usage = TokenUsage(
            input_tokens=min(input_tokens, TOKENS_PER_RECORD_MAX),
            output_tokens=min(output_limit, TOKENS_PER_RECORD_MAX),
        )
        if price is None and mode is not BillingMode.REQUEST:
            raise price_not_found(cmd.provider, cmd.model, account.currency_code)
        charge = charge_for(account, mode, price, usage)
        return charge.cost_nanos, charge.request_credits, usage, price

    def _authorize_in(
        self,
        store: Store,
        cmd: AuthorizeUsage,
        account: Account,
        payload_sha256: str,
        held_nanos: int,
        held_credits: int,
        usage: TokenUsage,
        price: Price | None,
    ) -> Authorization:
        locked = store.lock_accounts([account.account_id]).get(account.account_id)
        if locked is None:
            raise _account_not_found(account.account_id)
        account = locked[0]
        stored = store.get_stored_result(account.account_id, cmd.request_id)
        if stored is not None:
            if stored.operation != _OP_AUTHORIZE or stored.payload_sha256 != payload_sha256:
                raise request_id_conflict(cmd.request_id)
            return Authorization(**{**json.loads(stored.result_json), "replayed": True})
        now = self._clock.now_us()
        holds = Holds(locked[1], locked[2], *store.get_holds(account.account_id))
        allowed = account.allow_negative_balance or holds.covers(held_nanos, held_credits)
        deny_reason = "" if allowed else "INSUFFICIENT_BALANCE"
        statuses = _budget_statuses(store, account, cmd.api_key_id, cmd.model, now)
        tightest, headroom, warnings = "", 0, []
        for status in statuses:
            after = status.headroom - measure(status.budget.metric, held_nanos, usage, 1)
            if after < 0 and status.budget.hard:
                if allowed:
                    allowed, deny_reason = False, "BUDGET_EXCEEDED"
            elif after < 0:
                warnings.append(status.budget.budget_id)
            if not tightest or after < headroom:
                tightest, headroom = status.budget.budget_id, after
        reservation_id, expire_us = "", 0
        if allowed:
            reservation_id = _new_id()
            expire_us = now + (cmd.ttl_us or TTL_DEFAULT_US)
            store.insert_reservation(
                Reservation(
                    account_id=account.account_id,
                    reservation_id=reservation_id,
                    request_id=cmd.request_id,
                    state=ReservationState.OPEN,
                    amount_nanos=held_nanos,
                    request_credits=held_credits,
                    model=cmd.model,
                    provider=cmd.provider.lower() or (price.provider if price else ""),
                    api_key_id=cmd.api_key_id,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    price_id=price.price_id if price else "",
                    price_version=price.version if price else 0,
                    create_time_us=now,
                    expire_time_us=expire_us,
                )
            )
            store.set_holds(
                account.account_id,
                holds.held_nanos + held_nanos,
                holds.held_credits + held_credits,
            )
            telemetry.record_reservation_event("opened")
        result = Authorization(
            allowed=allowed,
            reservation_id=reservation_id,
            deny_reason=deny_reason,
            currency_code=account.currency_code,
            held_nanos=held_nanos,
            held_credits=held_credits,
            available_nanos=holds.available_nanos - (held_nanos if allowed else 0),
            available_credits=holds.available_credits - (held_credits if allowed else 0),
            expire_time_us=expire_us,
            budget_id=tightest,
            budget_headroom=headroom,
            budget_warnings=tuple(warnings),
        )
        store.store_result(
            account.account_id,
            cmd.request_id,
            _OP_AUTHORIZE,
            payload_sha256,
            json.dumps(asdict(result)),
            now,
        )
        return result

    def release_reservation(self, account_id: str, reservation_id: str) -> Release:
        """Release an open hold; a resolved reservation is left as it is (at most once)."""
        v = Violations()
        val.check_account_id(v, account_id)
        if not reservation_id or len(reservation_id) > 64 or not reservation_id.isprintable():
            v.add("reservation_id", "reservation_id is required (1-64 printable characters)")
        v.raise_if_any()
        with self._db.write() as store:
            locked = store.lock_accounts([account_id]).get(account_id)
            if locked is None:
                raise _account_not_found(account_id)
            reservation = store.get_reservation(account_id, reservation_id)
            if reservation is None:
                raise NotFound(
                    "RESERVATION_NOT_FOUND",
                    f"account {account_id!r} has no reservation {reservation_id!r}",
                    {"reservation_id": reservation_id},
                )
            held_nanos, held_credits = store.get_holds(account_id)
            state = reservation.state
            if state is ReservationState.OPEN:
                store.resolve_reservation(
                    account_id,
                    reservation_id,
                    ReservationState.RELEASED,
                    self._clock.now_us(),
                    None,
                )
                held_nanos -= reservation.amount_nanos
                held_credits -= reservation.request_credits
                store.set_holds(account_id, held_nanos, held_credits)
                state = ReservationState.RELEASED
        return Release(state, locked[0].currency_code, locked[1] - held_nanos)

    def expire_reservations(self, limit: int = 500) -> int:
        """Resolve open holds past their TTL; returns how many this call expired.

        Safe on any number of processes at once: each reservation is resolved
        under its account's row lock, only if still open, so exactly one
        process expires it. By the account's policy the hold is released, or
        captured as an ESTIMATED usage record of the held amount.
        """
        now = self._clock.now_us()
        with self._db.read() as store:
            due = store.due_reservations(now, limit)
        by_account: dict[str, list[str]] = {}
        for account_id, reservation_id in due:
            by_account.setdefault(account_id, []).append(reservation_id)
        expired = 0
        for account_id, reservation_ids in sorted(by_account.items()):
            with self._db.write() as store:
                locked = store.lock_accounts([account_id]).get(account_id)
                if locked is None:
                    continue
                account, balance, credits = locked
                held_nanos, held_credits = store.get_holds(account_id)
                for reservation_id in reservation_ids:
                    reservation = store.get_reservation(account_id, reservation_id)
                    if (
                        reservation is None
                        or reservation.state is not ReservationState.OPEN
                        or reservation.expire_time_us > now
                    ):
                        continue
                    record_id = None
                    if account.reservation_expiry_policy is ExpiryPolicy.CAPTURE and (
                        reservation.amount_nanos or reservation.request_credits
                    ):
                        record_id = _new_id()
                        balance, credits = self._capture_estimate(
                            store, account, reservation, record_id, balance, credits, now
                        )
                    store.resolve_reservation(
                        account_id, reservation_id, ReservationState.EXPIRED, now, record_id
                    )
                    held_nanos -= reservation.amount_nanos
                    held_credits -= reservation.request_credits
                    expired += 1
                store.set_holds(account_id, held_nanos, held_credits)
                store.set_balances(account_id, balance, credits)
        if expired:
            telemetry.record_reservation_event("expired", count=expired)
        return expired

    def _capture_estimate(
        self,
        store: Store,
        account: Account,
        reservation: Reservation,
        record_id: str,
        balance: int,
        credits: int,
        now: int,
    ) -> tuple[int, int]:
        """Record an abandoned call at its held amount, as an ESTIMATED usage record."""
        balance, credits = _in_range(
            account.account_id,
            balance - reservation.amount_nanos,
            credits - reservation.request_credits,
        )
        transaction_id = _new_id()
        request_id = f"expiry:{reservation.reservation_id}"
        store.append_transaction(
            account_id=account.account_id,
            transaction_id=transaction_id,
            kind=TransactionKind.USAGE,
            request_id=request_id,
            reason="reservation expired without a report",
            now_us=now,
            entries=usage_entries(
                account.account_id,
                account.currency_code,
                reservation.amount_nanos,
                reservation.request_credits,
            ),
        )
        store.insert_usage_record(
            UsageRecord(
                account_id=account.account_id,
                record_id=record_id,
                request_id=request_id,
                transaction_id=transaction_id,
                event_time_us=reservation.create_time_us,
                record_time_us=now,
                provider=reservation.provider,
                model=reservation.model,
                api_key_id=reservation.api_key_id,
                service="",
                streamed=False,
                usage_source=UsageSource.ESTIMATED,
                usage=TokenUsage(
                    input_tokens=reservation.input_tokens,
                    output_tokens=reservation.output_tokens,
                ),
                currency_code=account.currency_code,
                cost_nanos=reservation.amount_nanos,
                request_credits=reservation.request_credits,
                price_id=reservation.price_id,
                price_version=reservation.price_version,
                billing_mode=account.billing_mode.value,
            )
        )
        store.store_result(
            account.account_id,
            request_id,
            "ReservationExpiry",
            request_id,
            json.dumps({"record_id": record_id, "reservation_id": reservation.reservation_id}),
            now,
        )
        return balance, credits

    # Missing-usage policies ------------------------------------------------

    def set_missing_usage_policy(self, policy: MissingUsagePolicy) -> MissingUsagePolicy:
        """Create or replace the policy of its scope; every process applies it to its next call."""
        v = Violations()
        if policy.account_id:
            val.check_account_id(v, policy.account_id, "policy.account_id")
        if policy.provider:
            val.check_provider(v, policy.provider)
        if policy.model:
            val.check_model(v, policy.model)
        policy.check(v)
        v.raise_if_any()
        policy = replace(policy, provider=policy.provider.lower())
        with self._db.write() as store:
            if policy.account_id and store.get_account(policy.account_id) is None:
                raise _account_not_found(policy.account_id)
            store.put_missing_usage_policy(policy, self._clock.now_us())
        return policy

    def list_missing_usage_policies(self) -> list[MissingUsagePolicy]:
        """Every policy, most specific first."""
        with self._db.read() as store:
            policies = store.missing_usage_policies()
        return sorted(policies, key=lambda p: (p.specificity(), p.scope), reverse=True)

    def delete_missing_usage_policy(self, account_id: str, provider: str, model: str) -> None:
        with self._db.write() as store:
            if not store.delete_missing_usage_policy(account_id, provider.lower(), model):
                raise NotFound(
                    "POLICY_NOT_FOUND",
                    f"no missing-usage policy for account {account_id!r}, provider "
                    f"{provider!r}, model {model!r}",
                    {"account_id": account_id, "provider": provider, "model": model},
                )

    # Budgets ---------------------------------------------------------------

    def set_budget(self, budget: Budget) -> Budget:
        """Create or replace a budget of an account (at most 64 per account)."""
        v = Violations()
        val.check_account_id(v, budget.account_id)
        if not _BUDGET_ID.fullmatch(budget.budget_id):
            v.add("budget.budget_id", "budget_id must be 1-64 characters of [A-Za-z0-9._-]")
        val.check_name(v, "budget.api_key_id", budget.api_key_id)
        if budget.model:
            val.check_model(v, budget.model)
        if budget.metric is BudgetMetric.BALANCE_FLOOR:
            if abs(budget.limit_value) > 10**18:
                v.add("budget.limit", "a balance floor must be within ±10^9 units")
            if budget.api_key_id or budget.model:
                v.add("budget.api_key_id", "a balance floor is the account's: no key or model")
        elif not 0 < budget.limit_value <= 10**18:
            v.add("budget.limit", "limit must be positive (nanos, tokens or requests)")
        if budget.period is BudgetPeriod.ROLLING:
            if not 0 < budget.rolling_seconds <= ROLLING_SECONDS_MAX:
                v.add("budget.rolling_window", "a rolling budget needs a window of 1 s to 400 days")
        elif budget.rolling_seconds:
            v.add("budget.rolling_window", "only ROLLING budgets have a window")
        thresholds = budget.thresholds
        if len(thresholds) > 10 or any(not 0 < t <= 1000 for t in thresholds):
            v.add("budget.thresholds_percent", "at most 10 thresholds, each in [1, 1000] percent")
        v.raise_if_any()
        budget = replace(budget, thresholds=tuple(sorted(set(thresholds))))
        with self._db.write() as store:
            if not store.lock_accounts([budget.account_id]):
                raise _account_not_found(budget.account_id)
            existing = store.budgets_for(budget.account_id)
            if len(existing) >= BUDGETS_PER_ACCOUNT_MAX and all(
                b.budget_id != budget.budget_id for b in existing
            ):
                raise FailedPrecondition(
                    "TOO_MANY_BUDGETS", f"an account has at most {BUDGETS_PER_ACCOUNT_MAX} budgets"
                )
            store.put_budget(budget, self._clock.now_us())
        return budget

    def list_budgets(self, account_id: str) -> list[Budget]:
        """The account's budgets."""
        v = Violations()
        val.check_account_id(v, account_id)
        v.raise_if_any()
        with self._db.read() as store:
            if store.get_account(account_id) is None:
                raise _account_not_found(account_id)
            return store.budgets_for(account_id)

    def delete_budget(self, account_id: str, budget_id: str) -> None:
        """Remove a budget; NOT_FOUND if there is none."""
        v = Violations()
        val.check_account_id(v, account_id)
        if not _BUDGET_ID.fullmatch(budget_id):
            v.add("budget_id", "budget_id must be 1-64 characters of [A-Za-z0-9._-]")
        v.raise_if_any()
        with self._db.write() as store:
            if not store.delete_budget(account_id, budget_id):
                raise NotFound(
                    "BUDGET_NOT_FOUND",
                    f"account {account_id!r} has no budget {budget_id!r}",
                    {"budget_id": budget_id[:64]},
                )

    def budget_events(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """Threshold events in the order they happened, for an operator's poller."""
        v = Violations()
        if account_id:
            val.check_account_id(v, account_id)
        page_size = page_size or PAGE_SIZE_DEFAULT
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            v.add("page_size", f"page_size must be in [1, {PAGE_SIZE_MAX}]")
        after: tuple[int, str] = (-1, "")
        if page_token:
            try:
                time_text, _, event_id = (
                    base64.urlsafe_b64decode(page_token[:200]).decode().partition(":")
                )
                after = (int(time_text), event_id)
            except ValueError:
                v.add("page_token", "page_token is invalid")
        v.raise_if_any()
        with self._db.read() as store:
            events = store.budget_events(after, account_id or None, page_size)
        token = page_token
        if events:
            last = events[-1]
            token = base64.urlsafe_b64encode(
                f"{last['create_time_us']}:{last['event_id']}".encode()
            ).decode()
        return events, token

    # Estimates --------------------------------------------------------------

    def estimate_tokens(self, cmd: EstimateTokens) -> Estimate:
        """Count the tokens of a text (exactly for OpenAI models) and price them today."""
        v = Violations()
        val.check_model(v, cmd.model)
        val.check_provider(v, cmd.provider)
        if len(cmd.text) > val.TEXT_LENGTH_MAX:
            v.add("text", f"text must be at most {val.TEXT_LENGTH_MAX} characters")
        if len(cmd.completion_text) > val.TEXT_LENGTH_MAX:
            v.add(
                "completion_text",
                f"completion_text must be at most {val.TEXT_LENGTH_MAX} characters",
            )
        if not 0 <= cmd.max_output_tokens <= TOKENS_PER_RECORD_MAX:
            v.add("max_output_tokens", f"max_output_tokens must be in [0, {TOKENS_PER_RECORD_MAX}]")
        if cmd.account_id:
            val.check_account_id(v, cmd.account_id)
        if cmd.request_json and cmd.text:
            v.add("text", "send either text or request_json, not both")
        v.raise_if_any()
        account = Account("", "USD", BillingMode.TOKEN, False, 0)
        if cmd.account_id:
            with self._db.read() as store:
                found = store.get_account(cmd.account_id)
            if found is None:
                raise _account_not_found(cmd.account_id)
            account = found
        currency, mode = account.currency_code, account.billing_mode
        completion = count_text(cmd.model, cmd.completion_text, self._tokenizers)
        request_format, output_limit = "", cmd.max_output_tokens
        if cmd.request_json:
            fmt = RequestFormat[cmd.request_format] if cmd.request_format else None
            counted = count_request(cmd.model, cmd.request_json, fmt, registry=self._tokenizers)
            prompt = TextCount(counted.input_tokens, counted.exact, counted.tokenizer)
            request_format = counted.format.name
            output_limit = output_limit or counted.max_output_tokens or 0
        else:
            prompt = count_text(cmd.model, cmd.text, self._tokenizers)
        price = self._prices().find(
            cmd.provider, cmd.model, currency, self._clock.now_us(), account.account_id
        )
        estimated = worst = None
        if price is not None:
            estimated = charge_for(
                account,
                mode,
                price,
                TokenUsage(input_tokens=prompt.tokens, output_tokens=completion.tokens),
            ).cost_nanos
            if output_limit:
                worst = charge_for(
                    account,
                    mode,
                    price,
                    TokenUsage(
                        input_tokens=prompt.tokens,
                        output_tokens=min(output_limit, TOKENS_PER_RECORD_MAX),
                    ),
                ).cost_nanos
        return Estimate(
            input_tokens=prompt.tokens,
            output_tokens=completion.tokens,
            exact=prompt.exact,
            tokenizer=prompt.tokenizer,
            currency_code=currency,
            estimated_cost_nanos=estimated,
            worst_case_cost_nanos=worst,
            price_id=price.price_id if price else "",
            price_version=price.version if price else 0,
            request_format=request_format,
            max_output_tokens=output_limit,
        )

    # Summaries --------------------------------------------------------------

    def usage_summary(self, query: SummaryQuery) -> SummaryPage:
        """Aggregate usage in calendar buckets of a time zone, grouped, paginated."""
        v = Violations()
        if query.account_id:
            val.check_account_id(v, query.account_id)
        if query.start_us is None:
            v.add("start_time", "start_time is required")
        else:
            val.check_time(v, "start_time", query.start_us)
        if query.end_us is None:
            v.add("end_time", "end_time is required")
        if query.start_us is not None and query.end_us is not None:
            if query.end_us <= query.start_us:
                v.add("end_time", "end_time must be after start_time (the range is half-open)")
            elif query.end_us - query.start_us > SUMMARY_RANGE_MAX_US:
                v.add("end_time", "the range must be at most 400 days")
        zone: ZoneInfo | None = None
        tz_name = query.time_zone or "UTC"
        if len(tz_name) > 64 or not tz_name.isprintable():
            v.add("time_zone", "time_zone must be an IANA name such as Europe/Berlin")
        else:
            zone = _zone(tz_name)
            if zone is None:
                v.add("time_zone", f"unknown time zone {tz_name!r}; use an IANA name")
        if len(set(query.group_by)) != len(query.group_by):
            v.add("group_by", "each group_by dimension may appear once")
        page_size = query.page_size or PAGE_SIZE_DEFAULT
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            v.add("page_size", f"page_size must be in [1, {PAGE_SIZE_MAX}]")
        if query.currency_code and not is_currency_code(query.currency_code):
            v.add("currency_code", "currency_code must be an ISO 4217 code")
        fingerprint = _payload_sha256({**asdict(query), "page_token": "", "page_size": page_size})[
            :16
        ]
        offset = 0
        if query.page_token:
            offset = _decode_page_token(query.page_token, fingerprint, v)
        v.raise_if_any()
        assert query.start_us is not None and query.end_us is not None and zone is not None
        flt = SummaryFilter(
            start_us=query.start_us,
            end_us=query.end_us,
            account_id=query.account_id or None,
            currency_code=query.currency_code or None,
            group_by=query.group_by,
            segments=segments(query.start_us, query.end_us, zone, query.granularity),
            usage_sources=tuple(sorted({source.value for source in query.usage_sources})),
        )
        with self._db.read() as store:
            if query.account_id and store.get_account(query.account_id) is None:
                raise _account_not_found(query.account_id)
            slices = store.summarize(flt)
        currencies = {s.currency_code for s in slices}
        if len(currencies) > 1:
            raise FailedPrecondition(
                "MIXED_CURRENCIES",
                f"the range holds records in {', '.join(sorted(currencies))}; set currency_code",
            )
        rows = regroup(slices, query.granularity, zone, query.start_us)
        totals = Aggregate(
            start_us=query.start_us,
            keys=(),
            currency_code=next(iter(currencies), query.currency_code or "USD"),
        )
        for row in rows:
            totals.add(row)
        page = rows[offset : offset + page_size]
        next_offset = offset + page_size
        token = _encode_page_token(next_offset, fingerprint) if next_offset < len(rows) else ""
        return SummaryPage(
            rows=page,
            totals=totals,
            next_page_token=token,
            group_by=tuple(key.value for key in query.group_by),
        )


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(name: str) -> ZoneInfo | None:
    """The IANA zone, or None: only names from the zone database, never a file path."""
    if name not in _zone_names() and name != "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _price_of(
    book: PriceBook, cmd: RecordUsage, account: Account, mode: BillingMode, event_time_us: int
) -> tuple[Price | None, MeteringError | None]:
    """The price of a record, or the error its account's unpriced policy calls for.

    The error is deferred to the write: a retry of an already recorded
    request_id is answered from the stored result even if the price has gone.
    """
    price = book.find(
        cmd.provider, cmd.model, account.currency_code, event_time_us, account.account_id
    )
    needs_price = mode is not BillingMode.REQUEST
    if price is None and needs_price and account.unpriced_policy is UnpricedPolicy.REJECT:
        return None, price_not_found(cmd.provider, cmd.model, account.currency_code)
    return price, None


def check_batch_size(size: int) -> None:
    if not 1 <= size <= BATCH_RECORDS_MAX:
        raise InvalidArgument([FieldViolation("records", f"send 1-{BATCH_RECORDS_MAX} records")])


class _BatchWrites:
    """The state of one write batch: locked accounts, running balances, rows to insert."""

    def __init__(self, store: Store, batch: Sequence[PendingRecord], now_us: int) -> None:
        self.store = store
        self.now_us = now_us
        ids = sorted({p.account.account_id for p in batch})
        locked = store.lock_accounts(ids)
        self.accounts = {account_id: row[0] for account_id, row in locked.items()}
        self.balances = {account_id: (row[1], row[2]) for account_id, row in locked.items()}
        pairs = sorted({(p.account.account_id, p.command.api_key_id) for p in batch})
        overrides = store.get_api_key_modes([pair for pair in pairs if pair[1]])
        # Every pair of the batch, None where the key has no override.
        self.key_modes: dict[tuple[str, str], BillingMode | None] = {
            pair: overrides.get(pair) for pair in pairs
        }
        self._stored: dict[tuple[str, str], StoredResultLike] = dict(
            store.get_stored_results(
                sorted({(p.account.account_id, p.command.request_id) for p in batch})
            )
        )
        self._dirty: set[str] = set()
        self.crossings: list[BudgetCrossing] = []
        self.holds: dict[str, tuple[int, int]] = {}
        self._reported: set[str] = set()
        self._transactions: list[NewTransaction] = []
        self._records: list[UsageRecord] = []
        self._results: list[NewResult] = []

    def stored_result(self, account_id: str, request_id: str) -> StoredResultLike | None:
        return self._stored.get((account_id, request_id))

    def debit(self, account_id: str, cost_nanos: int, credits: int) -> tuple[int, int]:
        """The running balances after this record; refused outside the supported range."""
        balance, left = self.balances[account_id]
        balance, left = _in_range(account_id, balance - cost_nanos, left - credits)
        self.balances[account_id] = (balance, left)
        self._dirty.add(account_id)
        return balance, left

    def reported(self, record_id: str) -> bool:
        """Whether a record of this batch already corrects that estimate."""
        return record_id in self._reported

    def mark_reported(self, record_id: str) -> None:
        self._reported.add(record_id)

    def release_hold(self, account_id: str, amount_nanos: int, credits: int) -> None:
        """Lower the account's open holds by a resolved reservation's amounts."""
        if account_id not in self.holds:
            self.holds[account_id] = self.store.get_holds(account_id)
        held_nanos, held_credits = self.holds[account_id]
        self.holds[account_id] = (held_nanos - amount_nanos, held_credits - credits)

    def add(
        self,
        transaction: NewTransaction,
        record: UsageRecord,
        result: NewResult,
        reversal: UsageRecord | None = None,
    ) -> None:
        self._transactions.append(transaction)
        if reversal is not None:
            self._records.append(reversal)
        self._records.append(record)
        self._results.append(result)
        # A later record of the batch with the same key must see this one.
        self._stored[(result.account_id, result.request_id)] = result

    def flush(self) -> None:
        for account_id, (held_nanos, held_credits) in sorted(self.holds.items()):
            self.store.set_holds(account_id, held_nanos, held_credits)
        if not self._records:
            return
        self.store.append_transactions(self._transactions)
        self.store.insert_usage_records(self._records)
        self.store.store_results(self._results)
        self.store.set_balances_many(
            [(account_id, *self.balances[account_id]) for account_id in sorted(self._dirty)]
        )


@dataclass(frozen=True)
class BudgetCrossing:
    """A budget threshold crossed by a committed batch (its outbox row was written)."""

    account_id: str
    budget_id: str
    metric: str
    hard: bool
    threshold_percent: int
    used_value: int
    limit_value: int


def report_budget_crossings(crossings: Sequence[BudgetCrossing]) -> None:
    """The default sink: a metric and a warning per crossing."""
    for crossing in crossings:
        telemetry.record_budget_event(crossing.metric, crossing.hard, crossing.threshold_percent)
        log.warning(
            "budget %s of account %s crossed %d%% (%d of %d)",
            crossing.budget_id,
            crossing.account_id,
            crossing.threshold_percent,
            crossing.used_value,
            crossing.limit_value,
        )


def _check_estimate_inputs(v: Violations, cmd: RecordUsage) -> None:
    if len(cmd.request_json) > RAW_BODY_BYTES_MAX:
        v.add("request_json", f"request_json must be at most {RAW_BODY_BYTES_MAX} bytes")
    if cmd.request_json and cmd.prompt_text:
        v.add("prompt_text", "send either prompt_text or request_json, not both")
    for name in ("prompt_text", "completion_text"):
        if len(getattr(cmd, name)) > val.TEXT_LENGTH_MAX:
            v.add(name, f"{name} must be at most {val.TEXT_LENGTH_MAX} characters")


def _missing_charge(
    policy: MissingUsagePolicy,
    account: Account,
    charge: Charge,
    reservation: Reservation | None,
) -> tuple[Charge, str]:
    """A MISSING call's charge under its policy, and the fallback that priced it.

    The fallback replaces what zero tokens would cost; request credits stay
    as the price says (a call is a call).
    """
    if policy.fallback is Fallback.FLAT_FEE:
        fee = policy.fee_for(account.currency_code)
        if fee:
            return replace(charge, cost_nanos=fee, unpriced=False), Fallback.FLAT_FEE.value
    elif (
        policy.fallback is Fallback.RESERVATION
        and reservation is not None
        and reservation.state is ReservationState.OPEN
        and reservation.amount_nanos
    ):
        return (
            replace(charge, cost_nanos=reservation.amount_nanos, unpriced=False),
            Fallback.RESERVATION.value,
        )
    return charge, Fallback.NONE.value


def _budget_statuses(
    store: Store,
    account: Account,
    api_key_id: str,
    model: str,
    now_us: int,
    budgets: list[Budget] | None = None,
) -> list[BudgetStatus]:
    """The account's budgets that apply to this key and model, with their usage."""
    statuses = []
    zone = _zone(account.time_zone) or ZoneInfo("UTC")
    if budgets is None:
        budgets = store.budgets_for(account.account_id)
    available: int | None = None
    for budget in budgets:
        if not budget.applies(api_key_id, model):
            continue
        start = budget.period_start_us(now_us, zone)
        if budget.metric is BudgetMetric.BALANCE_FLOOR:
            if available is None:
                available = store.get_balances(account.account_id)[0]
                available -= store.get_holds(account.account_id)[0]
            statuses.append(BudgetStatus(budget, start, available))
        else:
            statuses.append(BudgetStatus(budget, start, store.budget_usage(budget, start)))
    return statuses


def _with_budgets(
    store: Store,
    writes: _BatchWrites,
    batch: Sequence[PendingRecord],
    results: list[RecordResult | MeteringError],
) -> list[RecordResult | MeteringError]:
    """After a batch: emit threshold events once per period, report each record's headroom."""
    budgets = store.budgets_for_accounts(sorted(writes.accounts))
    if not budgets:
        return results
    cache: dict[tuple[str, str, str], list[BudgetStatus]] = {}
    out: list[RecordResult | MeteringError] = []
    for pending, result in zip(batch, results, strict=True):
        account_budgets = budgets.get(pending.account.account_id)
        if not isinstance(result, RecordResult) or result.replayed or not account_budgets:
            out.append(result)
            continue
        account = writes.accounts[pending.account.account_id]
        key = (account.account_id, pending.command.api_key_id, pending.command.model)
        if key not in cache:
            cache[key] = _budget_statuses(
                store, account, key[1], key[2], writes.now_us, account_budgets
            )
            for status in cache[key]:
                for threshold in status.crossed():
                    if store.add_budget_event(
                        account.account_id,
                        _new_id(),
                        status.budget.budget_id,
                        status.period_start_us,
                        threshold,
                        status.used,
                        status.budget.limit_value,
                        writes.now_us,
                    ):
                        writes.crossings.append(
                            BudgetCrossing(
                                account_id=account.account_id,
                                budget_id=status.budget.budget_id,
                                metric=status.budget.metric.value,
                                hard=status.budget.hard,
                                threshold_percent=threshold,
                                used_value=status.used,
                                limit_value=status.budget.limit_value,
                            )
                        )
        statuses = cache[key]
        if not statuses:
            out.append(result)
            continue
        tightest = min(statuses, key=lambda s: s.headroom)
        out.append(
            replace(
                result,
                budget_id=tightest.budget.budget_id,
                budget_headroom=tightest.headroom,
                budget_warnings=tuple(
                    s.budget.budget_id for s in statuses if s.headroom < 0 and not s.budget.hard
                ),
            )
        )
    return out


def _encode_page_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str, fingerprint: str, v: Violations) -> int:
    try:
        if len(token) > 256:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = data["o"]
        if not isinstance(offset, int) or offset < 0 or data["f"] != fingerprint:
            raise ValueError("mismatch")
        return offset
    except (ValueError, KeyError, TypeError):
        v.add("page_token", "page_token is invalid or belongs to a different query")
        return 0


_SETTINGS = frozenset(
    {
        "billing_mode",
        "allow_negative_balance",
        "unpriced_policy",
        "price_adjustment_bps",
        "request_asset",
        "default_request_price_nanos",
        "default_request_credits",
        "reservation_expiry_policy",
        "time_zone",
    }
)


def _check_settings(v: Violations, account: Account) -> None:
    if len(account.time_zone) > 64 or _zone(account.time_zone) is None:
        v.add("time_zone", f"unknown time zone {account.time_zone[:64]!r}; use an IANA name")
    if not PRICE_ADJUSTMENT_BPS_MIN <= account.price_adjustment_bps <= PRICE_ADJUSTMENT_BPS_MAX:
        v.add(
            "price_adjustment_bps",
            f"price_adjustment_bps must be in [{PRICE_ADJUSTMENT_BPS_MIN}, "
            f"{PRICE_ADJUSTMENT_BPS_MAX}]",
        )
    if not 0 <= account.default_request_price_nanos <= AMOUNT_NANOS_MAX:
        v.add("default_request_price", f"must be in [0, {AMOUNT_UNITS_MAX}] units")
    if not 0 <= account.default_request_credits <= REQUEST_CREDITS_PER_CALL_MAX:
        v.add(
            "default_request_credits",
            f"default_request_credits must be in [0, {REQUEST_CREDITS_PER_CALL_MAX}]",
        )


def _account_not_found(account_id: str) -> NotFound:
    return NotFound(
        "ACCOUNT_NOT_FOUND", f"account {account_id!r} does not exist", {"account_id": account_id}
    )


def _account_exists(account_id: str) -> AlreadyExists:
    return AlreadyExists(
        "ACCOUNT_ALREADY_EXISTS",
        f"account {account_id!r} already exists",
        {"account_id": account_id},
    )
