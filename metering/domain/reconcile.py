"""Reconciliation: compare local usage with the provider's bill, line by line.

A line is a UTC day x model x key (or one request, where the export names
requests). Both sides are tallied the same way (calls, tokens, cost); a line
matches when its tokens and cost agree within the tolerances. The comparison
is pure; the service reads the tallies and applies the differences.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from metering.domain.usage import TokenUsage

# The token counts compared (the others nest inside them and follow).
COMPARED_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class Kind(enum.Enum):
    MATCHED = "MATCHED"
    LOCAL_ONLY = "LOCAL_ONLY"  # recorded locally, absent upstream
    UPSTREAM_ONLY = "UPSTREAM_ONLY"  # billed upstream, never recorded (a lost call)
    TOKENS = "TOKENS"  # both sides have it; the token counts (or calls) differ
    COST = "COST"  # same tokens, different cost


@dataclass(frozen=True)
class LineKey:
    day: str  # YYYY-MM-DD (UTC)
    model: str  # the model's canonical name (its price id where it has one)
    api_key_id: str
    request_id: str = ""


@dataclass(frozen=True)
class LocalTally:
    """The local side of a reconciliation line."""

    day_index: int  # days since 1970-01-01 (UTC)
    model: str
    api_key_id: str
    account_id: str
    currency_code: str
    request_count: int
    usage: TokenUsage
    cost_nanos: int


@dataclass(frozen=True)
class Tally:
    request_count: int | None
    usage: TokenUsage
    cost_nanos: int | None
    currency_code: str | None


@dataclass
class Line:
    kind: Kind
    key: LineKey
    model: str  # as named (upstream's name where it has the line)
    account_id: str
    local: Tally | None
    upstream: Tally | None
    # Upstream minus local cost, when both costs are known in one currency.
    cost_difference_nanos: int | None = None
    applied: bool = False
    problem: str = ""
    notes: list[str] = field(default_factory=list)


def token_difference(local: TokenUsage, upstream: TokenUsage) -> TokenUsage:
    return upstream.minus(local)


def compare_line(
    local: Tally | None,
    upstream: Tally | None,
    *,
    compare_tokens: bool,
    compare_cost: bool,
    token_tolerance: int,
    cost_tolerance_nanos: int,
) -> tuple[Kind, int | None]:
    """The line's kind, and upstream minus local cost where both are known."""
    if upstream is None:
        return Kind.LOCAL_ONLY, None
    if local is None:
        return Kind.UPSTREAM_ONLY, upstream.cost_nanos
    difference = None
    if (
        upstream.cost_nanos is not None
        and local.cost_nanos is not None
        and upstream.currency_code == local.currency_code
    ):
        difference = upstream.cost_nanos - local.cost_nanos
    if compare_tokens:
        for name in COMPARED_TOKENS:
            if abs(getattr(upstream.usage, name) - getattr(local.usage, name)) > token_tolerance:
                return Kind.TOKENS, difference
        if (
            upstream.request_count is not None
            and local.request_count is not None
            and upstream.request_count != local.request_count
        ):
            return Kind.TOKENS, difference
    if compare_cost and difference is not None and abs(difference) > cost_tolerance_nanos:
        return Kind.COST, difference
    return Kind.MATCHED, difference
