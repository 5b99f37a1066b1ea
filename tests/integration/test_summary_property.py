"""Property: a summary's cost is the sum of its records' costs to the nano, on both databases."""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.bootstrap import SystemClock
from metering.domain.summary import Granularity, GroupKey
from metering.domain.usage import TokenUsage
from metering.service.commands import CreateAccount, RecordUsage, SummaryQuery
from metering.service.handlers import Metering
from metering.service.prices import PriceBookCache, sync_catalogue
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase
from tests.conftest import TEST_PRICES

MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-pro", "cheap-model", "fee-model"]
DAY_US = 86_400_000_000
_accounts = itertools.count()


@st.composite
def usages(draw: st.DrawFn) -> TokenUsage:
    input_tokens = draw(st.integers(0, 400_000))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    output = draw(st.integers(0, 100_000))
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(0, cache_write)),
        reasoning_tokens=draw(st.integers(0, output)),
    )


records = st.lists(
    st.tuples(st.sampled_from(MODELS), usages(), st.integers(0, 3 * DAY_US - 1), st.booleans()),
    min_size=1,
    max_size=12,
)


def test_summary_cost_is_the_sum_of_record_costs(database_url: str) -> None:
    engine = make_engine(database_url)
    database = SqlDatabase(engine)
    clock = SystemClock()
    sync_catalogue(database, json.loads(TEST_PRICES.read_text()), "test", clock)
    metering = Metering(database, PriceBookCache(database), clock)
    start_us = clock.now_us() - 4 * DAY_US

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(records)
    def check(calls: list[tuple[str, TokenUsage, int, bool]]) -> None:
        account = f"prop-{next(_accounts)}"
        metering.create_account(CreateAccount(account, allow_negative_balance=True))
        total = 0
        for index, (model, usage, offset_us, batch) in enumerate(calls):
            result = metering.record_usage(
                RecordUsage(
                    account,
                    f"r{index}",
                    model,
                    usage=usage,
                    event_time_us=start_us + offset_us,
                    batch=batch,
                )
            )
            total += result.cost_nanos
        page = metering.usage_summary(
            SummaryQuery(
                start_us,
                start_us + 4 * DAY_US,
                account_id=account,
                granularity=Granularity.DAY,
                time_zone="America/New_York",
                group_by=(GroupKey.MODEL,),
                page_size=1000,
            )
        )
        assert page.totals.cost_nanos == total
        assert sum(row.cost_nanos for row in page.rows) == total
        assert page.totals.request_count == len(calls)
        assert metering.get_balance(account).balance_nanos == -total

    try:
        check()
    finally:
        engine.dispose()


ZONES = ["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kathmandu", "Australia/Lord_Howe"]
# 2026-03-27 .. 2026-04-08: Berlin springs forward, Santiago falls back, Lord Howe moves 30 min.
WINDOW_START_US = 1_774_569_600_000_000
WINDOW_US = 12 * DAY_US


def test_buckets_match_an_independent_oracle_across_offset_changes(database_url: str) -> None:
    from zoneinfo import ZoneInfo

    from metering.domain.summary import bucket_start_us

    engine = make_engine(database_url)
    database = SqlDatabase(engine)
    clock = SystemClock()
    sync_catalogue(database, json.loads(TEST_PRICES.read_text()), "test", clock)
    metering = Metering(database, PriceBookCache(database), clock)
    account = f"dst-{next(_accounts)}"
    metering.create_account(CreateAccount(account, allow_negative_balance=True))
    times: list[int] = []
    for index in range(240):
        # Spread over the window at odd offsets, so slices and their edges all get records.
        event_us = WINDOW_START_US + (index * 4_321_987_654_321) % WINDOW_US
        metering.record_usage(
            RecordUsage(
                account, f"r{index}", "cheap-model", usage=TokenUsage(1), event_time_us=event_us
            )
        )
        times.append(event_us)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(ZONES),
        st.sampled_from([Granularity.HOUR, Granularity.DAY, Granularity.MONTH]),
        st.integers(0, 3 * DAY_US),
        st.integers(DAY_US, 9 * DAY_US),
    )
    def check(zone_name: str, granularity: Granularity, skip_us: int, length_us: int) -> None:
        start = WINDOW_START_US + skip_us
        end = start + length_us
        zone = ZoneInfo(zone_name)
        expected: dict[int, int] = {}
        for event_us in times:
            if start <= event_us < end:
                bucket = max(bucket_start_us(event_us, granularity, zone, start), start)
                expected[bucket] = expected.get(bucket, 0) + 1
        page = metering.usage_summary(
            SummaryQuery(
                start,
                end,
                account_id=account,
                granularity=granularity,
                time_zone=zone_name,
                page_size=1000,
            )
        )
        assert {row.start_us: row.request_count for row in page.rows} == expected

    try:
        check()
    finally:
        engine.dispose()
