"""Calendar buckets in IANA time zones (DST, half- and quarter-hour offsets) and regrouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.domain.summary import SLICE_US, Aggregate, Granularity, bucket_start_us, regroup

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = Granularity.HOUR
DAY = Granularity.DAY
MONTH = Granularity.MONTH


def us(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time (no floats involved)."""
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH) // timedelta(
        microseconds=1
    )


RANGE_START = us("2000-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("zone", "granularity", "time", "start"),
    [
        # UTC
        ("UTC", HOUR, "2026-03-29T01:30:00Z", "2026-03-29T01:00:00Z"),
        ("UTC", HOUR, "2026-03-29T01:00:00Z", "2026-03-29T01:00:00Z"),
        ("UTC", HOUR, "2026-03-29T01:59:59.999999Z", "2026-03-29T01:00:00Z"),
        ("UTC", DAY, "2026-03-29T23:59:59.999999Z", "2026-03-29T00:00:00Z"),
        ("UTC", DAY, "2026-03-29T00:00:00Z", "2026-03-29T00:00:00Z"),
        ("UTC", MONTH, "2026-03-31T23:59:59.999999Z", "2026-03-01T00:00:00Z"),
        ("UTC", MONTH, "2026-04-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ("UTC", MONTH, "2024-02-29T12:00:00Z", "2024-02-01T00:00:00Z"),
        ("UTC", MONTH, "2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z"),
        # Europe/Berlin, spring forward on 2026-03-29: 02:00 CET (01:00Z) -> 03:00 CEST.
        # 00:30Z = 01:30 CET: its hour began at 01:00 CET = 00:00Z.
        ("Europe/Berlin", HOUR, "2026-03-29T00:30:00Z", "2026-03-29T00:00:00Z"),
        # 01:30Z = 03:30 CEST: its hour began at 03:00 CEST = 01:00Z.
        ("Europe/Berlin", HOUR, "2026-03-29T01:30:00Z", "2026-03-29T01:00:00Z"),
        ("Europe/Berlin", HOUR, "2026-03-29T00:59:59.999999Z", "2026-03-29T00:00:00Z"),
        ("Europe/Berlin", HOUR, "2026-03-29T01:00:00Z", "2026-03-29T01:00:00Z"),
        # The 29th began at 00:00 CET = 23:00Z on the 28th, whatever the hour of the day.
        ("Europe/Berlin", DAY, "2026-03-28T23:00:00Z", "2026-03-28T23:00:00Z"),
        ("Europe/Berlin", DAY, "2026-03-29T00:30:00Z", "2026-03-28T23:00:00Z"),
        ("Europe/Berlin", DAY, "2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z"),
        ("Europe/Berlin", DAY, "2026-03-29T21:59:59Z", "2026-03-28T23:00:00Z"),
        # ... and lasted 23 hours: the 30th began at 00:00 CEST = 22:00Z on the 29th.
        ("Europe/Berlin", DAY, "2026-03-29T22:00:00Z", "2026-03-29T22:00:00Z"),
        ("Europe/Berlin", DAY, "2026-03-28T22:59:59Z", "2026-03-27T23:00:00Z"),
        # March began in CET (23:00Z on Feb 28), April in CEST (22:00Z on Mar 31).
        ("Europe/Berlin", MONTH, "2026-03-31T21:59:59Z", "2026-02-28T23:00:00Z"),
        ("Europe/Berlin", MONTH, "2026-03-31T22:00:00Z", "2026-03-31T22:00:00Z"),
        ("Europe/Berlin", MONTH, "2026-04-15T12:00:00Z", "2026-03-31T22:00:00Z"),
        ("Europe/Berlin", MONTH, "2026-03-29T12:00:00Z", "2026-02-28T23:00:00Z"),
        # Fall back on 2026-10-25: 03:00 CEST (01:00Z) -> 02:00 CET; 02:xx happens twice.
        # 00:30Z = 02:30 CEST (first time): hour began at 02:00 CEST = 00:00Z.
        ("Europe/Berlin", HOUR, "2026-10-25T00:30:00Z", "2026-10-25T00:00:00Z"),
        # 01:30Z = 02:30 CET (second time): hour began at 02:00 CET = 01:00Z.
        ("Europe/Berlin", HOUR, "2026-10-25T01:30:00Z", "2026-10-25T01:00:00Z"),
        # That day lasted 25 hours: 22:00Z on the 24th to 23:00Z on the 25th.
        ("Europe/Berlin", DAY, "2026-10-25T01:30:00Z", "2026-10-24T22:00:00Z"),
        ("Europe/Berlin", DAY, "2026-10-25T22:59:59Z", "2026-10-24T22:00:00Z"),
        ("Europe/Berlin", DAY, "2026-10-25T23:00:00Z", "2026-10-25T23:00:00Z"),
        ("Europe/Berlin", MONTH, "2026-10-25T01:30:00Z", "2026-09-30T22:00:00Z"),
        ("Europe/Berlin", MONTH, "2026-10-31T23:00:00Z", "2026-10-31T23:00:00Z"),
        # Asia/Kolkata, +05:30 all year: hours start at :30 UTC.
        ("Asia/Kolkata", HOUR, "2026-03-29T01:00:00Z", "2026-03-29T00:30:00Z"),
        ("Asia/Kolkata", HOUR, "2026-03-29T00:29:59Z", "2026-03-28T23:30:00Z"),
        ("Asia/Kolkata", HOUR, "2026-03-29T00:30:00Z", "2026-03-29T00:30:00Z"),
        ("Asia/Kolkata", DAY, "2026-03-29T01:00:00Z", "2026-03-28T18:30:00Z"),
        ("Asia/Kolkata", DAY, "2026-03-28T18:29:59Z", "2026-03-27T18:30:00Z"),
        ("Asia/Kolkata", MONTH, "2026-03-31T18:30:00Z", "2026-03-31T18:30:00Z"),
        ("Asia/Kolkata", MONTH, "2026-03-31T18:29:59Z", "2026-02-28T18:30:00Z"),
        # Asia/Kathmandu, +05:45: hours start at :15 UTC.
        ("Asia/Kathmandu", HOUR, "2026-03-29T01:00:00Z", "2026-03-29T00:15:00Z"),
        ("Asia/Kathmandu", HOUR, "2026-03-29T00:14:59Z", "2026-03-28T23:15:00Z"),
        ("Asia/Kathmandu", DAY, "2026-03-29T01:00:00Z", "2026-03-28T18:15:00Z"),
        ("Asia/Kathmandu", DAY, "2026-03-28T18:15:00Z", "2026-03-28T18:15:00Z"),
        ("Asia/Kathmandu", MONTH, "2026-04-10T00:00:00Z", "2026-03-31T18:15:00Z"),
        # A negative offset with DST: America/New_York springs forward on 2026-03-08.
        ("America/New_York", DAY, "2026-03-08T12:00:00Z", "2026-03-08T05:00:00Z"),
        ("America/New_York", DAY, "2026-03-09T03:59:59Z", "2026-03-08T05:00:00Z"),
        ("America/New_York", DAY, "2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z"),
        ("America/New_York", HOUR, "2026-03-08T07:30:00Z", "2026-03-08T07:00:00Z"),
        # America/Santiago changes at local midnight. On 2026-04-05 00:00 -03 (03:00Z)
        # clocks go back to 23:00 -04, so 23:xx on the 4th happens twice.
        ("America/Santiago", HOUR, "2026-04-05T02:30:00Z", "2026-04-05T02:00:00Z"),
        ("America/Santiago", HOUR, "2026-04-05T03:30:00Z", "2026-04-05T03:00:00Z"),
        ("America/Santiago", DAY, "2026-04-05T02:30:00Z", "2026-04-04T03:00:00Z"),
        ("America/Santiago", DAY, "2026-04-05T03:30:00Z", "2026-04-04T03:00:00Z"),
        ("America/Santiago", DAY, "2026-04-05T04:00:00Z", "2026-04-05T04:00:00Z"),
        # On 2026-09-06 midnight does not exist (00:00 -04 -> 01:00 -03 at 04:00Z):
        # the day begins at 01:00 -03 = 04:00Z.
        ("America/Santiago", DAY, "2026-09-06T04:00:00Z", "2026-09-06T04:00:00Z"),
        ("America/Santiago", DAY, "2026-09-06T12:00:00Z", "2026-09-06T04:00:00Z"),
        ("America/Santiago", DAY, "2026-09-06T03:59:59Z", "2026-09-05T04:00:00Z"),
        ("America/Santiago", MONTH, "2026-09-10T00:00:00Z", "2026-09-01T04:00:00Z"),
    ],
)
def test_bucket_start(zone: str, granularity: Granularity, time: str, start: str) -> None:
    assert bucket_start_us(us(time), granularity, ZoneInfo(zone), RANGE_START) == us(start)


def test_none_granularity_is_the_range_start() -> None:
    for zone in ("UTC", "Europe/Berlin", "Asia/Kathmandu"):
        assert (
            bucket_start_us(us("2026-03-29T01:30:00Z"), Granularity.NONE, ZoneInfo(zone), 42) == 42
        )


_ZONES = [
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",  # a 30-minute DST shift
]


# UTC instants of 2026 offset changes in those zones, to aim the property at them.
_TRANSITIONS = [
    us(t)
    for t in (
        "2026-03-29T01:00:00Z",  # Europe/Berlin
        "2026-10-25T01:00:00Z",
        "2026-03-08T07:00:00Z",  # America/New_York
        "2026-11-01T06:00:00Z",
        "2026-04-05T03:00:00Z",  # America/Santiago
        "2026-09-06T04:00:00Z",
        "2026-04-04T15:00:00Z",  # Australia/Lord_Howe
        "2026-10-03T15:30:00Z",
    )
]
_HOURS_US = 3600 * 1_000_000
_TIMES = st.integers(
    min_value=us("2000-01-01T00:00:00Z"), max_value=us("2040-01-01T00:00:00Z")
) | st.builds(
    lambda transition, delta: transition + delta,
    st.sampled_from(_TRANSITIONS),
    st.integers(min_value=-26 * _HOURS_US, max_value=26 * _HOURS_US),
)


@given(_TIMES, st.sampled_from([HOUR, DAY, MONTH]), st.sampled_from(_ZONES))
def test_bucket_start_is_a_local_boundary_at_or_before_the_time(
    time_us: int, granularity: Granularity, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)

    def wall(t_us: int) -> tuple[int, ...]:
        local = (_EPOCH + timedelta(microseconds=t_us)).astimezone(zone)
        full = (local.year, local.month, local.day, local.hour)
        return full[: {MONTH: 2, DAY: 3, HOUR: 4}[granularity]]

    def fold(t_us: int) -> int:
        return (_EPOCH + timedelta(microseconds=t_us)).astimezone(zone).fold

    start = bucket_start_us(time_us, granularity, zone, RANGE_START)
    assert start <= time_us
    # The time is in the same local hour/day/month as its bucket's start ...
    assert wall(start) == wall(time_us)
    # ... and the start is the first instant of that hour/day/month (not always
    # xx:00 local: a DST change can skip midnight or half an hour). A repeated
    # hour at a fall-back change is a bucket of its own.
    assert wall(start - 1) != wall(start) or (
        granularity is HOUR and fold(start - 1) != fold(start)
    )
    # Idempotent: a bucket's start lies in its own bucket.
    assert bucket_start_us(start, granularity, zone, RANGE_START) == start


def agg(start: str, keys: tuple[str, ...], currency: str = "USD", **sums: int) -> Aggregate:
    return Aggregate(start_us=us(start), keys=keys, currency_code=currency, **sums)


def test_regroup_merges_slices_into_local_days() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    range_start = us("2026-03-27T18:30:00Z")  # 2026-03-28 00:00 IST
    slices = [
        # 2026-03-28 IST
        agg("2026-03-27T18:30:00Z", ("gpt-4o",), request_count=1, input_tokens=10, cost_nanos=5),
        agg("2026-03-28T18:15:00Z", ("gpt-4o",), request_count=2, input_tokens=20, cost_nanos=7),
        agg("2026-03-28T00:00:00Z", ("claude",), request_count=1, output_tokens=3, cost_nanos=9),
        # 2026-03-29 IST starts at 18:30Z on the 28th
        agg("2026-03-28T18:30:00Z", ("gpt-4o",), request_count=4, reasoning_tokens=2, cost_nanos=1),
        agg("2026-03-28T18:30:00Z", ("claude",), request_count=1, request_credits=1),
    ]
    result = regroup(slices, DAY, kolkata, range_start)
    assert [(a.start_us, a.keys) for a in result] == [
        (us("2026-03-27T18:30:00Z"), ("claude",)),
        (us("2026-03-27T18:30:00Z"), ("gpt-4o",)),
        (us("2026-03-28T18:30:00Z"), ("claude",)),
        (us("2026-03-28T18:30:00Z"), ("gpt-4o",)),
    ]
    claude_28, gpt_28, claude_29, gpt_29 = result
    assert (gpt_28.request_count, gpt_28.input_tokens, gpt_28.cost_nanos) == (3, 30, 12)
    assert (claude_28.request_count, claude_28.output_tokens, claude_28.cost_nanos) == (1, 3, 9)
    assert (gpt_29.request_count, gpt_29.reasoning_tokens, gpt_29.cost_nanos) == (4, 2, 1)
    assert (claude_29.request_count, claude_29.request_credits) == (1, 1)


def test_regroup_sums_every_field() -> None:
    fields = {
        "request_count": 1,
        "input_tokens": 2,
        "output_tokens": 3,
        "cache_read_tokens": 4,
        "cache_write_tokens": 5,
        "cache_write_1h_tokens": 6,
        "reasoning_tokens": 7,
        "cost_nanos": 8,
        "request_credits": 9,
    }
    slices = [
        agg(f"2026-03-29T0{h}:{m}:00Z", ("k",), **fields) for h in range(3) for m in ("00", "45")
    ]
    (merged,) = regroup(slices, DAY, ZoneInfo("UTC"), us("2026-03-29T00:00:00Z"))
    for name, value in fields.items():
        assert getattr(merged, name) == 6 * value, name


def test_regroup_does_not_mutate_its_input() -> None:
    slices = [
        agg("2026-03-29T00:00:00Z", ("k",), cost_nanos=1),
        agg("2026-03-29T00:15:00Z", ("k",), cost_nanos=2),
    ]
    regroup(slices, DAY, ZoneInfo("UTC"), us("2026-03-29T00:00:00Z"))
    assert [s.cost_nanos for s in slices] == [1, 2]
    assert [s.start_us for s in slices] == [us("2026-03-29T00:00:00Z"), us("2026-03-29T00:15:00Z")]


def test_regroup_keeps_currencies_apart() -> None:
    slices = [
        agg("2026-03-29T00:00:00Z", ("k",), "USD", cost_nanos=1),
        agg("2026-03-29T00:15:00Z", ("k",), "EUR", cost_nanos=2),
        agg("2026-03-29T00:30:00Z", ("k",), "USD", cost_nanos=4),
    ]
    result = regroup(slices, DAY, ZoneInfo("UTC"), us("2026-03-29T00:00:00Z"))
    assert [(a.currency_code, a.cost_nanos) for a in result] == [("EUR", 2), ("USD", 5)]


def test_regroup_orders_by_start_then_keys() -> None:
    slices = [
        agg("2026-03-29T02:00:00Z", ("b", "x")),
        agg("2026-03-29T01:00:00Z", ("b", "x")),
        agg("2026-03-29T02:15:00Z", ("a", "z")),
        agg("2026-03-29T01:45:00Z", ("a", "y")),
        agg("2026-03-29T01:30:00Z", ("a", "x")),
    ]
    result = regroup(slices, HOUR, ZoneInfo("UTC"), us("2026-03-29T00:00:00Z"))
    assert [(a.start_us, a.keys) for a in result] == [
        (us("2026-03-29T01:00:00Z"), ("a", "x")),
        (us("2026-03-29T01:00:00Z"), ("a", "y")),
        (us("2026-03-29T01:00:00Z"), ("b", "x")),
        (us("2026-03-29T02:00:00Z"), ("a", "z")),
        (us("2026-03-29T02:00:00Z"), ("b", "x")),
    ]


def test_regroup_reports_a_bucket_that_began_before_the_range_at_the_range_start() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    range_start = us("2026-03-29T10:00:00Z")  # mid-day in Berlin
    slices = [
        agg("2026-03-29T10:00:00Z", ("k",), request_count=1),
        agg("2026-03-29T21:45:00Z", ("k",), request_count=2),  # still the 29th (23:45 CEST)
        agg("2026-03-29T22:00:00Z", ("k",), request_count=4),  # the 30th
    ]
    result = regroup(slices, DAY, berlin, range_start)
    assert [(a.start_us, a.request_count) for a in result] == [
        (range_start, 3),
        (us("2026-03-29T22:00:00Z"), 4),
    ]
    # Also for months and with NONE (one bucket at the range start).
    (month,) = regroup(slices, MONTH, berlin, range_start)
    assert (month.start_us, month.request_count) == (range_start, 7)
    (whole,) = regroup(slices, Granularity.NONE, berlin, range_start)
    assert (whole.start_us, whole.request_count) == (range_start, 7)


def test_regroup_quarter_hour_zone_hours() -> None:
    # In Kathmandu (+05:45) an hour spans UTC :15 to :15; 15-minute slices
    # regroup into it exactly.
    kathmandu = ZoneInfo("Asia/Kathmandu")
    start = us("2026-03-29T00:15:00Z")
    slices = [
        Aggregate(start_us=start + i * SLICE_US, keys=(), currency_code="USD", request_count=1)
        for i in range(-1, 5)
    ]
    result = regroup(slices, HOUR, kathmandu, us("2026-03-28T00:00:00Z"))
    assert [(a.start_us, a.request_count) for a in result] == [
        (us("2026-03-28T23:15:00Z"), 1),
        (start, 4),
        (us("2026-03-29T01:15:00Z"), 1),
    ]


def test_regroup_empty() -> None:
    assert regroup([], DAY, ZoneInfo("UTC"), 0) == []
