"""The chaos step of clients/conformance/README.md.

The server is killed (SIGKILL, and SIGTERM) while usage is being reported and
restarted on the same port and database; after the client's retries and spool
replay, exactly N records are recorded, each once.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from pathlib import Path

import pytest
from support import MeteringServer

from metering_client import MeteringClient, RetryPolicy, UsageReporter

N = 200
EACH = 450_000  # 1000 x 0.15 + 500 x 0.60 per million, in nanos


def summary_and_balance(client: MeteringClient, account: str) -> tuple[int, int, int]:
    now = dt.datetime.now(dt.UTC)
    summary = client.usage_summary(
        account_id=account,
        start_time={"seconds": int((now - dt.timedelta(hours=1)).timestamp())},
        end_time={"seconds": int((now + dt.timedelta(hours=1)).timestamp())},
        granularity="GRANULARITY_NONE",
    )
    balance = client.get_balance(account_id=account).balance
    return (
        summary.totals.request_count,
        summary.totals.input_tokens,
        balance.units * 10**9 + balance.nanos,
    )


def crash_and_restart(server: MeteringServer, sig: int) -> None:
    server.stop(sig)
    time.sleep(1.0)  # clients see UNAVAILABLE meanwhile
    server.start()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_reporter_exactly_once_across_server_crash(
    fresh_server: MeteringServer, tmp_path: Path, sig: int
) -> None:
    account = f"chaos-{sig}"
    client = MeteringClient(
        fresh_server.address, timeout=2.0, retry=RetryPolicy(max_attempts=2, initial_backoff=0.05)
    )
    client.create_account(account_id=account, allow_negative_balance=True)
    reporter = UsageReporter(
        client, tmp_path / "spool.db", batch_size=10, flush_interval=0.01, max_backoff=0.5
    )
    third = threading.Event()

    def relay() -> None:
        for i in range(N):
            reporter.report(
                account_id=account,
                request_id=f"chaos-{i:04d}",
                model="gpt-4o-mini",
                usage={"input_tokens": 1000, "output_tokens": 500},
            )
            if i == N // 3:
                third.set()
            time.sleep(0.005)

    thread = threading.Thread(target=relay)
    thread.start()
    assert third.wait(30)
    crash_and_restart(fresh_server, sig)
    thread.join(60)
    assert reporter.flush(60), f"{reporter.pending()} records still spooled"
    assert reporter.stats.failed_batches > 0  # the crash was felt
    reporter.close()
    assert summary_and_balance(client, account) == (N, N * 1000, -N * EACH)
    client.close()


def test_direct_client_retries_across_server_crash(fresh_server: MeteringServer) -> None:
    """Plain record_usage calls in a thread, retried with the same request_id, exactly once."""
    account = "chaos-direct"
    policy = RetryPolicy(max_attempts=200, initial_backoff=0.05, max_backoff=0.3, total_timeout=60)
    client = MeteringClient(fresh_server.address, timeout=2.0, retry=policy)
    client.create_account(account_id=account, allow_negative_balance=True)
    third = threading.Event()
    replayed = []
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            for i in range(N):
                resp = client.record_usage(
                    account_id=account,
                    request_id=f"direct-{i:04d}",
                    model="gpt-4o-mini",
                    usage={"input_tokens": 1000, "output_tokens": 500},
                )
                if resp.replayed:
                    replayed.append(i)
                if i == N // 3:
                    third.set()
        except BaseException as exc:
            errors.append(exc)
            third.set()

    thread = threading.Thread(target=relay)
    thread.start()
    assert third.wait(30)
    crash_and_restart(fresh_server, signal.SIGKILL)
    thread.join(90)
    assert not errors, errors
    assert summary_and_balance(client, account) == (N, N * 1000, -N * EACH)
    client.close()
