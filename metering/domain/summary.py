"""Usage summaries: calendar buckets in a time zone, group keys, and sums."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Every UTC offset in use since 2000 is a multiple of 15 minutes, so sums per
# 15-minute UTC slice can be regrouped exactly into local hours, days and months
# of any IANA zone, in the same way on every database.
SLICE_US = 15 * 60 * 1_000_000


class Granularity(enum.Enum):
    NONE = "NONE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


class GroupKey(enum.Enum):
    MODEL = "model"
    PROVIDER = "provider"
    API_KEY = "api_key_id"
    SERVICE = "service"
    USAGE_SOURCE = "usage_source"
    ACCOUNT = "account_id"


@dataclass(frozen=True)
class SummaryFilter:
    start_us: int
    end_us: int
    account_id: str | None
    currency_code: str | None
    group_by: tuple[GroupKey, ...]
    sliced: bool  # group by 15-minute slices (False for granularity NONE)


@dataclass
class Aggregate:
    """Sums over a set of records; ``keys`` follow the filter's ``group_by`` order."""

    start_us: int
    keys: tuple[str, ...]
    currency_code: str
    request_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanos: int = 0
    request_credits: int = 0
    unpriced_request_count: int = 0
    _sum_fields: tuple[str, ...] = field(
        default=(
            "request_count",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "reasoning_tokens",
            "cost_nanos",
            "request_credits",
            "unpriced_request_count",
        ),
        repr=False,
        compare=False,
    )

    def add(self, other: Aggregate) -> None:
        for name in self._sum_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def bucket_start_us(
    time_us: int, granularity: Granularity, zone: ZoneInfo, range_start_us: int
) -> int:
    """The start (UTC microseconds) of the calendar bucket holding ``time_us`` in ``zone``."""
    if granularity is Granularity.NONE:
        return range_start_us
    local = datetime.fromtimestamp(time_us / 1_000_000, UTC).astimezone(zone)
    if granularity is Granularity.HOUR:
        local = local.replace(minute=0, second=0, microsecond=0)
    elif granularity is Granularity.DAY:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        local = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # Re-resolve the offset: the bucket's start may lie across a DST change.
    start = local.replace(tzinfo=None).replace(tzinfo=zone)
    return int(start.timestamp()) * 1_000_000


def regroup(
    slices: list[Aggregate], granularity: Granularity, zone: ZoneInfo, range_start_us: int
) -> list[Aggregate]:
    """Merge per-slice aggregates into calendar buckets, ordered by start then keys.

    A bucket that starts before the range start (the range began mid-day)
    is reported at the range start.
    """
    merged: dict[tuple[int, tuple[str, ...], str], Aggregate] = {}
    for item in slices:
        start = max(
            bucket_start_us(item.start_us, granularity, zone, range_start_us), range_start_us
        )
        key = (start, item.keys, item.currency_code)
        bucket = merged.get(key)
        if bucket is None:
            merged[key] = replace(item, start_us=start)
        else:
            bucket.add(item)
    return [merged[k] for k in sorted(merged)]
