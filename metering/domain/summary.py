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
class Segment:
    """Part of a range with one UTC offset: its buckets are integer divisions of slices.

    A record in slice ``s`` falls in bucket ``(s + offset_slices) // slices_per_bucket``,
    which starts at slice ``bucket * slices_per_bucket - offset_slices``.
    """

    start_us: int
    end_us: int
    offset_slices: int
    slices_per_bucket: int


@dataclass(frozen=True)
class SummaryFilter:
    start_us: int
    end_us: int
    account_id: str | None
    currency_code: str | None
    group_by: tuple[GroupKey, ...]
    # Empty for granularity NONE (one bucket over the range).
    segments: tuple[Segment, ...] = ()
    # Only these usage sources (UsageSource values); empty for all.
    usage_sources: tuple[str, ...] = ()


_SLICES_PER_BUCKET = {Granularity.HOUR: 4, Granularity.DAY: 96, Granularity.MONTH: 96}
_DAY_US = 86_400_000_000


def _offset_slices(zone: ZoneInfo, time_us: int) -> int:
    offset = datetime.fromtimestamp(time_us / 1_000_000, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds()) * 1_000_000 // SLICE_US


def _first_change(zone: ZoneInfo, low_us: int, high_us: int, offset: int) -> int:
    """The first slice start in (low, high] where the offset is no longer ``offset``."""
    low, high = low_us // SLICE_US, -(-high_us // SLICE_US)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_slices(zone, middle * SLICE_US) == offset:
            low = middle
        else:
            high = middle
    return high * SLICE_US


def segments(
    start_us: int, end_us: int, zone: ZoneInfo, granularity: Granularity
) -> tuple[Segment, ...]:
    """Split [start, end) where the zone's UTC offset changes, so that the database can
    bucket each part by integer arithmetic (months are bucketed by day, merged later).

    The offset is sampled once a day and each change located to the slice by
    bisection: zones change offset a few times a year at most, never twice a day,
    and always at a slice boundary.
    """
    if granularity is Granularity.NONE:
        return ()
    per = _SLICES_PER_BUCKET[granularity]
    parts: list[Segment] = []
    segment_start, time_us = start_us, start_us
    offset = _offset_slices(zone, start_us)
    while True:
        following = min(time_us + _DAY_US, end_us)
        check = following if following < end_us else end_us - 1
        if check > time_us and _offset_slices(zone, check) != offset:
            change = _first_change(zone, time_us, check, offset)
            parts.append(Segment(segment_start, change, offset, per))
            segment_start = time_us = change
            offset = _offset_slices(zone, change)
            continue
        if following >= end_us:
            break
        time_us = following
    parts.append(Segment(segment_start, end_us, offset, per))
    return tuple(parts)


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
    # Of the above: what is estimated by metering, or charged without any usage.
    estimated_request_count: int = 0
    estimated_cost_nanos: int = 0
    missing_request_count: int = 0
    missing_cost_nanos: int = 0
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
            "estimated_request_count",
            "estimated_cost_nanos",
            "missing_request_count",
            "missing_cost_nanos",
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
    starts: dict[int, int] = {}  # many aggregates share an instant; convert each once
    for item in slices:
        start = starts.get(item.start_us)
        if start is None:
            start = max(
                bucket_start_us(item.start_us, granularity, zone, range_start_us), range_start_us
            )
            starts[item.start_us] = start
        key = (start, item.keys, item.currency_code)
        bucket = merged.get(key)
        if bucket is None:
            merged[key] = replace(item, start_us=start)
        else:
            bucket.add(item)
    return [merged[k] for k in sorted(merged)]
