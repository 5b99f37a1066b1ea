"""Summaries at scale: a month's UsageSummary by day and model over N usage records.

Fills a fresh database (a throwaway PostgreSQL by default, or SQLite) with N
synthetic usage records spread over 30 days, 1,000 accounts and 20 models,
builds the rollups the way migration 0003 backfills them, then times the
service's usage_summary (rollups for whole slices, records for the edges)
against the same query run over the records alone, and prints the query plan
of the rollup query.

    python bench/summary_scale.py --records 10000000 --backend postgresql
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metering.bootstrap import SystemClock
from metering.domain.summary import (
    SLICE_US,
    Granularity,
    GroupKey,
    SummaryFilter,
    segments,
)
from metering.service.commands import SummaryQuery
from metering.service.handlers import Metering
from metering.service.prices import PriceBookCache
from metering.storage import migrate
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase
from tests.support.postgres import PostgresServer

START_US = 1_790_812_800_000_000  # 2026-10-01T00:00:00Z
DAYS = 30
ACCOUNTS = 1000
MODELS = 20

FILL_POSTGRES = f"""
INSERT INTO usage_records (account_id, record_id, request_id, event_time_us, record_time_us,
  provider, model, api_key_id, service, streamed, usage_source, input_tokens, output_tokens,
  cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, currency_code,
  cost_nanos, request_credits, price_id, price_version, transaction_id, labels_json)
SELECT 'acct-' || (i % {ACCOUNTS}), md5(i::text), 'r' || i,
  {START_US} + (i::bigint * 2654435761) % ({DAYS}::bigint * 86400000000), 0,
  'openai', 'model-' || (i % {MODELS}), 'key-' || (i % 50), 'svc', false, 'REPORTED',
  1000 + i % 1000, 100 + i % 100, 0, 0, 0, 0, 'USD', 150000 + i % 1000, 0, 'p', 1, md5(i::text),
  '{{}}'
FROM generate_series(1, :n) AS i
"""

FILL_SQLITE = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n)
INSERT INTO usage_records (account_id, record_id, request_id, event_time_us, record_time_us,
  provider, model, api_key_id, service, streamed, usage_source, input_tokens, output_tokens,
  cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, currency_code,
  cost_nanos, request_credits, price_id, price_version, transaction_id, labels_json)
SELECT 'acct-' || (i % {ACCOUNTS}), printf('%032x', i), 'r' || i,
  {START_US} + (i * 2654435761) % ({DAYS} * 86400000000), 0,
  'openai', 'model-' || (i % {MODELS}), 'key-' || (i % 50), 'svc', 0, 'REPORTED',
  1000 + i % 1000, 100 + i % 100, 0, 0, 0, 0, 'USD', 150000 + i % 1000, 0, 'p', 1,
  printf('%032x', i), '{{}}'
FROM seq
"""

ACCOUNTS_SQL = (
    "INSERT INTO accounts (account_id, currency_code, billing_mode, allow_negative_balance, "
    "balance_nanos, request_credits, create_time_us) VALUES (:id, 'USD', 'TOKEN', true, 0, 0, 0)"
)

ROLLUP = """
INSERT INTO usage_rollups (account_id, slice, model, provider, api_key_id, service,
  usage_source, currency_code, request_count, unpriced_request_count, input_tokens,
  output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
  reasoning_tokens, cost_nanos, request_credits)
SELECT account_id, event_time_us / 900000000, model, provider, api_key_id, service,
  usage_source, currency_code, SUM(request_count), 0, SUM(input_tokens), SUM(output_tokens),
  SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens),
  SUM(reasoning_tokens), SUM(cost_nanos), SUM(request_credits)
FROM usage_records
GROUP BY account_id, event_time_us / 900000000, model, provider, api_key_id, service,
  usage_source, currency_code
"""


GLOBAL_ROLLUP = """
INSERT INTO usage_rollups_global (slice, model, provider, usage_source, currency_code,
  request_count, unpriced_request_count, input_tokens, output_tokens, cache_read_tokens,
  cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cost_nanos, request_credits)
SELECT slice, model, provider, usage_source, currency_code, SUM(request_count),
  SUM(unpriced_request_count), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
  SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(reasoning_tokens), SUM(cost_nanos),
  SUM(request_credits)
FROM usage_rollups GROUP BY slice, model, provider, usage_source, currency_code
"""


def _timed(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    server = None
    if args.backend == "postgresql":
        server = PostgresServer().start()
        server.create_database("bench")
        url = server.url("bench")
    else:
        path = Path("/tmp") / f"summary-scale-{args.records}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        with engine.begin() as connection:
            if args.backend == "postgresql":
                # The fill is a bench fixture, not metering's write path: no triggers needed.
                connection.execute(text(FILL_POSTGRES), {"n": args.records})
            else:
                connection.execute(text(FILL_SQLITE), {"n": args.records})
            connection.execute(text(ACCOUNTS_SQL), [{"id": f"acct-{i}"} for i in range(ACCOUNTS)])
        fill_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text(ROLLUP))
            connection.execute(text(GLOBAL_ROLLUP))
            if args.backend == "postgresql":
                connection.execute(text("ANALYZE"))
            rollup_rows = connection.execute(text("SELECT count(*) FROM usage_rollups")).scalar()
            global_rows = connection.execute(
                text("SELECT count(*) FROM usage_rollups_global")
            ).scalar()
        rollup_seconds = time.perf_counter() - started
        database = SqlDatabase(engine)
        metering = Metering(database, PriceBookCache(database), SystemClock())
        end_us = START_US + DAYS * 86_400_000_000
        query = SummaryQuery(
            START_US + 3_600_000_000 + 123,  # not slice-aligned: the edges come from records
            end_us,
            granularity=Granularity.DAY,
            time_zone="Europe/Berlin",
            group_by=(GroupKey.MODEL,),
            page_size=1000,
        )
        summary_seconds, page = _timed(lambda: metering.usage_summary(query), args.repeats)
        zone = ZoneInfo("Europe/Berlin")
        flt = SummaryFilter(
            start_us=query.start_us or 0,
            end_us=end_us,
            account_id=None,
            currency_code=None,
            group_by=(GroupKey.MODEL,),
            segments=segments(query.start_us or 0, end_us, zone, Granularity.DAY),
        )

        def raw() -> object:
            # The same buckets computed from the records alone, without rollups.
            with database.read() as store:
                return [
                    row
                    for piece in flt.segments
                    for row in store._summarize_records(flt, piece, piece.start_us, piece.end_us)
                ]

        raw_seconds, raw_rows = _timed(raw, max(1, args.repeats // 2))
        raw_total = sum(r.cost_nanos for r in raw_rows)  # type: ignore[attr-defined]
        assert page.totals.cost_nanos == raw_total, (page.totals.cost_nanos, raw_total)  # type: ignore[attr-defined]
        account_query = SummaryQuery(
            START_US,
            end_us,
            account_id="acct-7",
            granularity=Granularity.DAY,
            group_by=(GroupKey.MODEL,),
            page_size=1000,
        )
        account_seconds, _ = _timed(lambda: metering.usage_summary(account_query), args.repeats)
        first, last = -(-flt.start_us // SLICE_US), end_us // SLICE_US
        plan_sql = (
            "SELECT (slice + 8) / 96, model, currency_code, SUM(cost_nanos) "
            f"FROM usage_rollups_global WHERE slice >= {first} AND slice < {last} "
            "GROUP BY (slice + 8) / 96, model, currency_code"
        )
        explain = (
            "EXPLAIN (ANALYZE, BUFFERS) " if args.backend == "postgresql" else "EXPLAIN QUERY PLAN "
        )
        with engine.connect() as connection:
            plan = [
                " | ".join(str(c) for c in row)
                for row in connection.execute(text(explain + plan_sql))
            ]
        engine.dispose()
    finally:
        if server is not None:
            server.stop()
    print(
        f"command: python bench/summary_scale.py --records {args.records} --backend {args.backend}"
    )
    print(
        f"records: {args.records:,}  fill: {fill_seconds:.1f}s  rollup rows: {rollup_rows:,}, "
        f"global rollup rows: {global_rows:,} (both built in {rollup_seconds:.1f}s)"
    )
    print(
        f"month by day (Europe/Berlin) and model, all accounts: {summary_seconds * 1000:.1f} ms "
        f"(median of {args.repeats}); {len(page.rows)} rows"
    )  # type: ignore[attr-defined]
    print(
        f"same over the records alone (no rollups):          {raw_seconds * 1000:.1f} ms "
        f"-> rollups are {raw_seconds / summary_seconds:.1f}x faster"
    )
    print(f"month by day and model, one account:               {account_seconds * 1000:.1f} ms")
    print("plan of the rollup query:")
    for line in plan:
        print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
