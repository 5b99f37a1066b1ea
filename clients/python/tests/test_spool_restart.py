"""Nothing is lost across a relay restart: the reporter process is killed and restarted."""

from __future__ import annotations

import datetime as dt
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support import HERE, MeteringServer, free_port

from metering_client import MeteringClient, UsageReporter

CHILD = HERE / "reporter_child.py"


def spawn(target: str, spool: Path, account: str, first: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), target, str(spool), account, str(first), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen[str], line: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for got in proc.stdout:
        if got.strip() == line:
            return
        assert time.monotonic() < deadline, f"child did not print {line!r}"
    raise AssertionError(f"child exited ({proc.wait()}) before printing {line!r}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def spooled(spool: Path) -> int:
    with sqlite3.connect(spool) as db:
        return int(db.execute("SELECT count(*) FROM pending").fetchone()[0])


def test_spool_survives_reporter_kills(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    server = MeteringServer(tmp_path / "srv", port=free_port())
    spool = tmp_path / "relay" / "usage-spool.db"
    account = "spool-acct"
    try:
        server.start()
        with MeteringClient(server.address) as c:
            c.create_account(account_id=account, allow_negative_balance=True)
        server.stop()

        # 1. The service is down: a relay reports 60 records, then is killed -9.
        first = spawn(server.address, spool, account, 0, 60)
        wait_for(first, "done")
        kill(first)
        assert spooled(spool) == 60  # everything is on disk, nothing was sent

        # 2. The service is back; a restarted relay replays and reports 60 more,
        #    and is killed -9 again while its sender may still be busy.
        server.start()
        second = spawn(server.address, spool, account, 60, 60)
        wait_for(second, "done")
        time.sleep(random.uniform(0.0, 0.05))
        kill(second)

        # 3. A third start drains whatever is left.
        with MeteringClient(server.address) as c:
            with UsageReporter(c, spool) as reporter:
                assert reporter.flush(30), f"{reporter.pending()} records still spooled"
            assert spooled(spool) == 0
            now = dt.datetime.now(dt.UTC)
            summary = c.usage_summary(
                account_id=account,
                start_time={"seconds": int((now - dt.timedelta(hours=1)).timestamp())},
                end_time={"seconds": int((now + dt.timedelta(hours=1)).timestamp())},
            )
            assert summary.totals.request_count == 120
            assert summary.totals.input_tokens == 120 * 1000
            balance = c.get_balance(account_id=account).balance
            assert balance.units * 10**9 + balance.nanos == -120 * 450_000
    finally:
        server.close()
