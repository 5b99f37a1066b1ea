"""A usage record as stored: one LLM call, its charge and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from metering.domain.ledger import Entry, TransactionKind
from metering.domain.usage import TokenUsage, UsageSource


@dataclass(frozen=True)
class UsageRecord:
    account_id: str
    record_id: str
    request_id: str
    transaction_id: str
    event_time_us: int
    record_time_us: int
    provider: str
    model: str
    api_key_id: str
    service: str
    streamed: bool
    usage_source: UsageSource
    usage: TokenUsage
    currency_code: str
    cost_nanos: int
    request_credits: int
    price_id: str
    price_version: int
    labels: dict[str, str] = field(default_factory=dict)
    # An ADJUSTMENT corrects ``corrects_record_id`` by the difference it carries
    # (cost, and tokens for usage corrections); it counts no request.
    record_kind: str = "USAGE"
    request_count: int = 1
    corrects_record_id: str | None = None
    billing_mode: str = "TOKEN"
    unpriced: bool = False
    batch: bool = False


@dataclass(frozen=True)
class NewTransaction:
    """A ledger transaction to append, with its entries."""

    account_id: str
    transaction_id: str
    kind: TransactionKind
    request_id: str
    reason: str
    now_us: int
    entries: list[Entry]
    corrects_transaction_id: str | None = None


@dataclass(frozen=True)
class NewResult:
    """An idempotency key with the result to return on a replay."""

    account_id: str
    request_id: str
    operation: str
    payload_sha256: str
    result_json: str
    now_us: int


@dataclass(frozen=True)
class Net:
    """A usage record as corrected: its own figures plus every adjustment linked to it."""

    usage: TokenUsage
    cost_nanos: int
    request_credits: int
    reported_after: bool  # a later report (not a repricing) already corrected it
    # How the call's numbers are known now: CORRECTED once superseded.
    source: UsageSource = UsageSource.REPORTED
    # Whether the figure in force is a batch-API call (the latest report decides).
    batch: bool = False


def _is_repricing(adjustment: UsageRecord) -> bool:
    return adjustment.request_id.startswith("reprice:")


def net_of(record: UsageRecord, adjustments: list[UsageRecord]) -> Net:
    """Sum a record and its adjustments (in the order written).

    Token deltas of later figures count; repricings carry none. The batch flag
    is the latest figure's: a late report prices the call as it says, and a
    repricing must price it the same way.
    """
    cost, credits = record.cost_nanos, record.request_credits
    usage = record.usage
    reported = False
    source, batch = record.usage_source, record.batch
    for adjustment in adjustments:
        usage = usage.plus(adjustment.usage)
        cost += adjustment.cost_nanos
        credits += adjustment.request_credits
        if _is_repricing(adjustment) or adjustment.request_count < 0:
            continue  # a repricing, or the reversal half of a correction
        reported = True
        batch = adjustment.batch
        if adjustment.usage_source is UsageSource.CORRECTED:
            source = UsageSource.CORRECTED
    return Net(usage, cost, credits, reported, source, batch)


def supersede(
    original: UsageRecord,
    net: Net,
    figure: UsageRecord,
    reversal_request_id: str,
) -> tuple[UsageRecord, UsageRecord]:
    """The two adjustment rows that make ``figure`` the call's numbers from now on.

    One reverses what the call counted so far (``net``) under the source it
    counted under, taking its request back; the other counts ``figure`` under
    CORRECTED. Both link to ``original`` and share ``figure``'s transaction.
    Summed with the original and its earlier adjustments they give exactly
    ``figure``, and every additive summary (by source, by day, rollups) moves
    the call from its old bucket to CORRECTED without touching a stored row.
    """
    reversal = replace(
        figure,
        record_id=f"{figure.record_id[:30]}rv",
        request_id=reversal_request_id,
        usage_source=net.source,
        usage=TokenUsage().minus(net.usage),
        cost_nanos=-net.cost_nanos,
        request_credits=-net.request_credits,
        price_id=original.price_id,
        price_version=original.price_version,
        record_kind="ADJUSTMENT",
        request_count=-1,
        corrects_record_id=original.record_id,
        batch=net.batch,
        unpriced=False,
    )
    replacement = replace(
        figure,
        usage_source=UsageSource.CORRECTED,
        record_kind="ADJUSTMENT",
        request_count=1,
        corrects_record_id=original.record_id,
    )
    return reversal, replacement
