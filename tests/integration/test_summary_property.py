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
