"""Budgets: limits on cost, tokens or requests per account, API key and model.

A budget's period is a calendar day or month in the account's time zone, or a
rolling window. Usage counts what was recorded in the period plus what open
reservations hold, so that concurrent calls cannot all fit under a limit.
A hard budget denies authorizations that would exceed it; a soft one warns.
Threshold events (50%, 80%, 100% by default) are emitted once per threshold
and period.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from metering.domain.usage import TokenUsage

THRESHOLDS_DEFAULT = (50, 80, 100)
BUDGETS_PER_ACCOUNT_MAX = 64
ROLLING_SECONDS_MAX = 400 * 24 * 3600


class BudgetPeriod(enum.Enum):
    DAY = "DAY"
    MONTH = "MONTH"
    ROLLING = "ROLLING"


class BudgetMetric(enum.Enum):
    COST = "COST"  # nanos of the account's currency
    TOKENS = "TOKENS"  # input plus output tokens
    REQUESTS = "REQUESTS"
    # The money balance available (balance minus holds) must stay at or above the
    # limit (nanos): a low-balance alarm (soft) or a reserve no call may eat into (hard).
    BALANCE_FLOOR = "BALANCE_FLOOR"


@dataclass(frozen=True)
class Budget:
    account_id: str
    budget_id: str
    period: BudgetPeriod
    metric: BudgetMetric
    limit_value: int
    hard: bool = True
    api_key_id: str = ""  # "" applies to every key
    model: str = ""  # "" applies to every model
    rolling_seconds: int = 0
    thresholds: tuple[int, ...] = THRESHOLDS_DEFAULT

    def applies(self, api_key_id: str, model: str) -> bool:
        return (not self.api_key_id or self.api_key_id == api_key_id) and (
            not self.model or self.model.lower() == model.lower()
        )

    def period_start_us(self, now_us: int, zone: ZoneInfo) -> int:
        """Where the current period began: local midnight, the 1st, or now minus the window."""
        if self.period is BudgetPeriod.ROLLING:
            return now_us - self.rolling_seconds * 1_000_000
        local = datetime.fromtimestamp(now_us / 1_000_000, UTC).astimezone(zone)
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.period is BudgetPeriod.MONTH:
            local = local.replace(day=1)
        start = local.replace(tzinfo=None).replace(tzinfo=zone)
        return int(start.timestamp()) * 1_000_000


def measure(metric: BudgetMetric, cost_nanos: int, usage: TokenUsage, requests: int) -> int:
    """How much of a metric one call (or hold) uses."""
    if metric in (BudgetMetric.COST, BudgetMetric.BALANCE_FLOOR):
        return cost_nanos
    if metric is BudgetMetric.TOKENS:
        return usage.input_tokens + usage.output_tokens
    return requests


@dataclass(frozen=True)
class BudgetStatus:
    """A budget against its period's usage (recorded plus held)."""

    budget: Budget
    period_start_us: int
    # Usage in the period; for a BALANCE_FLOOR budget, the available balance.
    used: int

    @property
    def headroom(self) -> int:
        if self.budget.metric is BudgetMetric.BALANCE_FLOOR:
            return self.used - self.budget.limit_value
        return self.budget.limit_value - self.used

    def crossed(self) -> list[int]:
        """The thresholds (percent) the usage has reached; a floor has one: falling below it."""
        if self.budget.metric is BudgetMetric.BALANCE_FLOOR:
            return [100] if self.used < self.budget.limit_value else []
        limit = self.budget.limit_value
        return [t for t in self.budget.thresholds if limit > 0 and self.used * 100 >= t * limit]
