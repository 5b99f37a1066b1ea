"""A relay-like process for the spool tests: reports records, then idles until killed.

usage: reporter_child.py TARGET SPOOL ACCOUNT FIRST COUNT

Prints "reported N" after each report() returned (the record is durable then)
and "done" at the end; then keeps the reporter running until it is killed.
"""

from __future__ import annotations

import sys
import time

from metering_client import MeteringClient, RetryPolicy, UsageReporter


def main() -> None:
    target, spool, account, first, count = sys.argv[1:6]
    client = MeteringClient(target, retry=RetryPolicy(max_attempts=1), timeout=2.0)
    reporter = UsageReporter(client, spool, batch_size=7, flush_interval=0.01, max_backoff=0.2)
    for i in range(int(first), int(first) + int(count)):
        reporter.report(
            account_id=account,
            request_id=f"spool-{i:05d}",
            model="gpt-4o-mini",
            provider="openai",
            usage={"input_tokens": 1000, "output_tokens": 500},
            streamed=True,
        )
        print(f"reported {i}", flush=True)
        time.sleep(0.002)
    print("done", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
