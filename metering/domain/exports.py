"""Exports and the review queue: what a row of each says, and the totals of an export."""

from __future__ import annotations

from dataclasses import dataclass, field

from metering.domain.records import UsageRecord
from metering.domain.summary import Aggregate
from metering.domain.usage import TOKEN_FIELDS

BASIS_POINTS_MAX = 10_000


@dataclass(frozen=True)
class RecordView:
    """A stored usage record as exported, with whether a later figure superseded it.

    ``corrected`` is true for an original call (record_kind USAGE) that has an
    ADJUSTMENT of source CORRECTED linked to it; it is always false for an
    adjustment row itself.
    """

    record: UsageRecord
    corrected: bool = False


@dataclass
class ExportTotals:
    """The sums of exactly the rows an export streamed, money per currency."""

    row_count: int = 0
    request_count: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)
    request_credits: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))

    def add_record(self, record: UsageRecord) -> None:
        self.row_count += 1
        self.request_count += record.request_count
        self._add_cost(record.currency_code, record.cost_nanos)
        self.request_credits += record.request_credits
        for name in TOKEN_FIELDS:
            self.tokens[name] += getattr(record.usage, name)

    def add_row(self, row: Aggregate) -> None:
        self.row_count += 1
        self.request_count += row.request_count
        self._add_cost(row.currency_code, row.cost_nanos)
        self.request_credits += row.request_credits
        for name in TOKEN_FIELDS:
            self.tokens[name] += getattr(row, name)

    def _add_cost(self, currency_code: str, nanos: int) -> None:
        self.cost_nanos[currency_code] = self.cost_nanos.get(currency_code, 0) + nanos


def share_reaches(part: int, whole: int, basis_points_min: int) -> bool:
    """Whether part/whole >= basis_points_min / 10000, in integers (no rounding)."""
    return whole > 0 and part * BASIS_POINTS_MAX >= basis_points_min * whole
