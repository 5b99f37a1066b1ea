"""A usage record as stored: one LLM call, its charge and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def net_of(record: UsageRecord, adjustments: list[UsageRecord]) -> Net:
    """Sum a record and its adjustments; token deltas of reports count, repricings carry none."""
    usage = record.usage
    cost, credits = record.cost_nanos, record.request_credits
    fields = (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
    )
    totals = {name: getattr(usage, name) for name in fields}
    reported = False
    for adjustment in adjustments:
        for name in fields:
            totals[name] += getattr(adjustment.usage, name)
        cost += adjustment.cost_nanos
        credits += adjustment.request_credits
        reported = reported or not adjustment.request_id.startswith("reprice:")
    return Net(TokenUsage(**totals), cost, credits, reported)
