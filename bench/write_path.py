"""The write path in-process, without gRPC: prepare + write_usage_batch per batch.

    python bench/write_path.py                      # SQLite, batches of 100 over 10,000 accounts
    python bench/write_path.py --backend postgresql # a throwaway cluster (tests/support)
    python bench/write_path.py --batch 1 --hot      # one record per transaction, one account
    python bench/write_path.py --profile out.prof   # cProfile of the timed part

Prints records/s of the timed part (prepare, then the write, on this thread), the
split, and the process's CPU time per record (steadier than the wall time, which
includes the commits' fsync on a shared disk).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metering.bootstrap import SystemClock
from metering.domain.usage import TokenUsage
from metering.service.commands import CreateAccount, GrantCredits, RecordUsage
from metering.service.handlers import Metering, PendingRecord
from metering.service.prices import PriceBookCache, sync_catalogue
from metering.storage import migrate
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase

PRICES = ROOT / "tests" / "data" / "prices.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--hot", action="store_true", help="every record on one account")
    parser.add_argument("--profile", help="write a cProfile of the timed part here")
    args = parser.parse_args()

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "sqlite":
            url = f"sqlite:///{tmp}/metering.db"
        else:
            from tests.support.postgres import PostgresServer

            server = PostgresServer()
            server.start()
            server.create_database("bench")
            url = server.url("bench")
        try:
            run(args, url)
        finally:
            if server is not None:
                server.stop()
    return 0


def run(args: argparse.Namespace, url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    database = SqlDatabase(engine)
    clock = SystemClock()
    sync_catalogue(database, json.loads(PRICES.read_text()), "bench", clock)
    book = PriceBookCache(database)
    book.refresh()
    metering = Metering(database, book, clock)
    accounts = 1 if args.hot else args.accounts
    for i in range(accounts):
        metering.create_account(CreateAccount(f"b{i}"))
        metering.grant_credits(GrantCredits(f"b{i}", "g", amount_nanos=10**12, currency_code="USD"))
    rng = random.Random(7)

    def batch(n: int) -> list[RecordUsage]:
        return [
            RecordUsage(
                account_id=f"b{rng.randrange(accounts)}",
                request_id=f"r{n}-{j}",
                model="gpt-4o-mini",
                provider="openai",
                usage=TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=200),
            )
            for j in range(args.batch)
        ]

    # Warm the account snapshots, as a running server has them.
    for i in range(0, accounts, 500):
        metering.prepare_many(
            [RecordUsage(f"b{j}", "warm", "gpt-4o-mini") for j in range(i, min(i + 500, accounts))]
        )
    work = [batch(n) for n in range(args.batches)]
    profiler = cProfile.Profile() if args.profile else None
    prepare_s = write_s = 0.0
    batch_ms: list[float] = []
    cpu_started = time.process_time()
    times_started = os.times()
    if profiler is not None:
        profiler.enable()
    for cmds in work:
        t0 = time.perf_counter()
        prepared = metering.prepare_many(cmds)
        t1 = time.perf_counter()
        pending = [p for p in prepared if isinstance(p, PendingRecord)]
        results = metering.write_usage_batch(pending)
        t2 = time.perf_counter()
        assert len(results) == len(cmds) and all(not isinstance(r, Exception) for r in results)
        prepare_s += t1 - t0
        write_s += t2 - t1
        batch_ms.append((t2 - t0) * 1000)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu_s = time.process_time() - cpu_started
    times = os.times()
    user_s = times.user - times_started.user
    print(f"user {user_s:.2f} s, system {times.system - times_started.system:.2f} s")
    records = args.batch * args.batches
    total = prepare_s + write_s
    print(
        f"{args.backend} batch={args.batch} accounts={accounts}: {records / total:,.0f} records/s"
        f" (prepare {prepare_s / records * 1e6:.1f} us/record,"
        f" write {write_s / records * 1e6:.1f} us/record;"
        f" CPU {cpu_s / records * 1e6:.1f} us/record)"
    )
    batch_ms.sort()
    print(
        f"per batch: p50 {batch_ms[len(batch_ms) // 2]:.1f} ms,"
        f" p99 {batch_ms[min(len(batch_ms) - 1, len(batch_ms) * 99 // 100)]:.1f} ms,"
        f" max {batch_ms[-1]:.1f} ms"
    )
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
