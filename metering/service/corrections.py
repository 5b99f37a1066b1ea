"""Corrections: a later, authoritative figure supersedes a recorded call.

Nothing recorded is changed. The call's previous figures are reversed and
the new ones counted under CORRECTED, as two adjustment rows linked to the
original, with one CORRECTION ledger transaction moving the difference. The
relay's correction (or an import's) is idempotent on its key; a figure equal
to the one already in force changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from metering.domain.accounts import Account, BillingMode, charge_for
from metering.domain.errors import FailedPrecondition, NotFound, Violations
from metering.domain.extraction import ResponseFormat, extract_usage
from metering.domain.ledger import TransactionKind, usage_entries
from metering.domain.pricing import PriceBook
from metering.domain.records import UsageRecord, net_of, supersede
from metering.domain.usage import TokenUsage, UsageSource
from metering.service import validation as val
from metering.service.balances import checked_balances, request_id_conflict
from metering.service.commands import CorrectionResult, CorrectUsage
from metering.service.ports import Clock, Database, Store

OP_CORRECT = "CorrectUsage"
REASON_LENGTH_MAX = 256
# A correction's cost, like a record's, stays far inside the balance range.
COST_NANOS_MAX = 10**9 * 10**9


@dataclass(frozen=True)
class _Figure:
    usage: TokenUsage
    cost_nanos: int
    request_credits: int
    price_id: str
    price_version: int


class Corrections:
    """Applies corrections to recorded calls."""

    def __init__(self, db: Database, prices: Callable[[], PriceBook], clock: Clock) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock

    def correct_usage(self, cmd: CorrectUsage) -> CorrectionResult:
        """Supersede the figures of the call recorded under ``cmd.request_id``.

        Raises InvalidArgument, NotFound (ACCOUNT_NOT_FOUND, RECORD_NOT_FOUND),
        AlreadyExists (REQUEST_ID_CONFLICT) or FailedPrecondition
        (PRICE_NOT_FOUND, BALANCE_OUT_OF_RANGE, CURRENCY_MISMATCH); on any error
        nothing is written.
        """
        usage = self._checked(cmd)
        payload = json.dumps(
            {
                "request_id": cmd.request_id,
                "usage": asdict(usage) if usage else None,
                "response_json": hashlib.sha256(cmd.response_json).hexdigest(),
                "response_format": cmd.response_format,
                "cost_nanos": cmd.cost_nanos,
                "cost_currency_code": cmd.cost_currency_code,
                "reason": cmd.reason,
            },
            sort_keys=True,
        )
        payload_sha256 = hashlib.sha256(payload.encode()).hexdigest()
        key = cmd.correction_id or f"correct:{payload_sha256[:48]}"
        with self._db.write() as store:
            account = store.get_account(cmd.account_id, for_update=True)
            if account is None:
                raise NotFound(
                    "ACCOUNT_NOT_FOUND",
                    f"account {cmd.account_id!r} does not exist",
                    {"account_id": cmd.account_id},
                )
            stored = store.get_stored_result(cmd.account_id, key)
            if stored is not None:
                if stored.operation != OP_CORRECT or stored.payload_sha256 != payload_sha256:
                    raise request_id_conflict(key)
                return _result_from_json(stored.result_json)
            original = _original_of(store, cmd.account_id, cmd.request_id)
            adjustments = store.adjustments_of(cmd.account_id, [original.record_id]).get(
                original.record_id, []
            )
            net = net_of(original, adjustments)
            if usage is None:
                fmt = ResponseFormat(cmd.response_format) if cmd.response_format else None
                extracted = extract_usage(cmd.response_json, fmt, field="response_json")
                if extracted.usage is None:
                    v = Violations()
                    v.add("response_json", "response_json carries no usage")
                    v.raise_if_any()
                assert extracted.usage is not None
                usage = extracted.usage
            if cmd.cost_nanos is not None and cmd.cost_currency_code != account.currency_code:
                raise FailedPrecondition(
                    "CURRENCY_MISMATCH",
                    f"cost is in {cmd.cost_currency_code}, account {account.account_id!r} "
                    f"in {account.currency_code}",
                    {"account_id": account.account_id},
                )
            figure = self._figure(original, account, usage, cmd, net.batch, net.request_credits)
            now = self._clock.now_us()
            same = (figure.usage, figure.cost_nanos, figure.request_credits) == (
                net.usage,
                net.cost_nanos,
                net.request_credits,
            )
            transaction_id = ""
            difference_nanos = figure.cost_nanos - net.cost_nanos
            difference_credits = figure.request_credits - net.request_credits
            balance, _ = store.get_balances(account.account_id)
            if not (same and net.source is UsageSource.CORRECTED):
                balance, credits = checked_balances(
                    store, account.account_id, -difference_nanos, -difference_credits
                )
                transaction_id = uuid.uuid4().hex
                store.append_transaction(
                    account_id=account.account_id,
                    transaction_id=transaction_id,
                    kind=TransactionKind.CORRECTION,
                    request_id=key,
                    reason=cmd.reason or f"usage of {cmd.request_id} corrected",
                    now_us=now,
                    entries=usage_entries(
                        account.account_id,
                        account.currency_code,
                        difference_nanos,
                        difference_credits,
                    ),
                    corrects_transaction_id=original.transaction_id,
                )
                new_figure = replace(
                    original,
                    record_id=uuid.uuid4().hex,
                    request_id=key,
                    transaction_id=transaction_id,
                    record_time_us=now,
                    usage=figure.usage,
                    cost_nanos=figure.cost_nanos,
                    request_credits=figure.request_credits,
                    price_id=figure.price_id,
                    price_version=figure.price_version,
                    unpriced=False,
                    batch=net.batch,
                )
                reversal, replacement = supersede(
                    original, net, new_figure, f"reversal:{transaction_id}"
                )
                store.insert_usage_records([reversal, replacement])
                store.set_balances(account.account_id, balance, credits)
            result = CorrectionResult(
                corrects_record_id=original.record_id,
                usage=figure.usage,
                cost_nanos=figure.cost_nanos,
                usage_difference=figure.usage.minus(net.usage),
                cost_difference_nanos=difference_nanos,
                currency_code=account.currency_code,
                balance_nanos=balance,
                transaction_id=transaction_id,
            )
            store.store_result(
                account.account_id,
                key,
                OP_CORRECT,
                payload_sha256,
                _result_to_json(result),
                now,
            )
        return result

    def _checked(self, cmd: CorrectUsage) -> TokenUsage | None:
        v = Violations()
        val.check_account_id(v, cmd.account_id)
        val.check_request_id(v, cmd.request_id)
        if cmd.correction_id:
            if len(cmd.correction_id) > 128 or not (
                cmd.correction_id.isascii() and cmd.correction_id.isprintable()
            ):
                v.add("correction_id", "correction_id must be 1-128 printable ASCII characters")
            elif cmd.correction_id.startswith(("reprice:", "reversal:", "expiry:")):
                v.add("correction_id", "correction_id must not use a reserved prefix")
        if len(cmd.reason) > REASON_LENGTH_MAX or not cmd.reason.isprintable():
            v.add("reason", f"reason must be at most {REASON_LENGTH_MAX} printable characters")
        if cmd.usage is None and not cmd.response_json:
            v.add("usage", "usage or response_json is required")
        if cmd.usage is not None:
            cmd.usage.check(v)
        if cmd.cost_nanos is not None and not 0 <= cmd.cost_nanos <= COST_NANOS_MAX:
            v.add("cost", "cost must be between 0 and 10^9 units")
        v.raise_if_any()
        return cmd.usage

    def _figure(
        self,
        original: UsageRecord,
        account: Account,
        usage: TokenUsage,
        cmd: CorrectUsage,
        batch: bool,
        credits_now: int,
    ) -> _Figure:
        """The new figures: the given cost, or the usage priced as the original was."""
        price = self._prices().find(
            original.provider,
            original.model,
            original.currency_code,
            original.event_time_us,
            original.account_id,
        )
        if cmd.cost_nanos is not None:
            return _Figure(
                usage,
                cmd.cost_nanos,
                credits_now,
                price.price_id if price else original.price_id,
                price.version if price else original.price_version,
            )
        charge = charge_for(account, BillingMode(original.billing_mode), price, usage, batch=batch)
        return _Figure(
            usage,
            charge.cost_nanos,
            charge.request_credits,
            price.price_id if price else "",
            price.version if price else 0,
        )


def _original_of(store: Store, account_id: str, request_id: str) -> UsageRecord:
    """The original call recorded under request_id (through a late report's row)."""
    found = store.get_usage_record_by_request(account_id, request_id)
    if found is not None and found.record_kind != "USAGE" and found.corrects_record_id:
        found = store.get_usage_record(account_id, found.corrects_record_id)
    if found is None or found.record_kind != "USAGE":
        raise NotFound(
            "RECORD_NOT_FOUND",
            f"account {account_id!r} has no usage recorded under {request_id!r}",
            {"request_id": request_id},
        )
    return found


def _result_to_json(result: CorrectionResult) -> str:
    data = asdict(result)
    return json.dumps(data)


def _result_from_json(text: str) -> CorrectionResult:
    data = json.loads(text)
    data["usage"] = TokenUsage(**data["usage"])
    data["usage_difference"] = TokenUsage(**data["usage_difference"])
    return CorrectionResult(**{**data, "replayed": True})


@dataclass(frozen=True)
class Adjustment:
    """A difference found for a group of calls (not one call): a reconciliation line."""

    account_id: str
    key: str  # idempotency key
    event_time_us: int
    provider: str
    model: str
    api_key_id: str
    usage_difference: TokenUsage
    request_count_difference: int
    cost_difference_nanos: int
    currency_code: str
    reason: str
    labels: dict[str, str]


def append_adjustment(db: Database, clock: Clock, adjustment: Adjustment) -> bool:
    """Write one adjustment row and its CORRECTION transaction; False when already written.

    It corrects no single record (none is known to be wrong), so it links to
    nothing but its key and reason, which name the import.
    """
    with db.write() as store:
        account = store.get_account(adjustment.account_id, for_update=True)
        if account is None:
            raise NotFound(
                "ACCOUNT_NOT_FOUND",
                f"account {adjustment.account_id!r} does not exist",
                {"account_id": adjustment.account_id},
            )
        if store.get_stored_result(adjustment.account_id, adjustment.key) is not None:
            return False
        if account.currency_code != adjustment.currency_code:
            raise FailedPrecondition(
                "CURRENCY_MISMATCH",
                f"the difference is in {adjustment.currency_code}, account "
                f"{account.account_id!r} in {account.currency_code}",
                {"account_id": account.account_id},
            )
        balance, credits = checked_balances(
            store, account.account_id, -adjustment.cost_difference_nanos, 0
        )
        now = clock.now_us()
        transaction_id = uuid.uuid4().hex
        store.append_transaction(
            account_id=account.account_id,
            transaction_id=transaction_id,
            kind=TransactionKind.CORRECTION,
            request_id=adjustment.key,
            reason=adjustment.reason,
            now_us=now,
            entries=usage_entries(
                account.account_id, account.currency_code, adjustment.cost_difference_nanos, 0
            ),
        )
        store.insert_usage_records(
            [
                UsageRecord(
                    account_id=account.account_id,
                    record_id=uuid.uuid4().hex,
                    request_id=adjustment.key,
                    transaction_id=transaction_id,
                    event_time_us=adjustment.event_time_us,
                    record_time_us=now,
                    provider=adjustment.provider,
                    model=adjustment.model,
                    api_key_id=adjustment.api_key_id,
                    service="",
                    streamed=False,
                    usage_source=UsageSource.CORRECTED,
                    usage=adjustment.usage_difference,
                    currency_code=account.currency_code,
                    cost_nanos=adjustment.cost_difference_nanos,
                    request_credits=0,
                    price_id="",
                    price_version=0,
                    labels=dict(adjustment.labels),
                    record_kind="ADJUSTMENT",
                    request_count=adjustment.request_count_difference,
                    billing_mode=account.billing_mode.value,
                )
            ]
        )
        store.set_balances(account.account_id, balance, credits)
        store.store_result(
            account.account_id,
            adjustment.key,
            "Reconcile",
            hashlib.sha256(adjustment.key.encode()).hexdigest(),
            json.dumps({"transaction_id": transaction_id}),
            now,
        )
    return True
