"""UsageReporter against the real server: batching, outcomes, dead letters, spool lock."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest
from support import MeteringServer, free_port, nanos

from metering_client import MeteringClient, ReportOutcome, UsageReporter
from metering_client.reporter import SpoolLockedError
from metering_client.v1 import admin_service_pb2, prices_pb2, types_pb2

EVENT_TIME = {"seconds": int(dt.datetime.now(dt.UTC).timestamp()) - 60}


def record(account: str, i: int, model: str = "gpt-4o-mini", **extra: object) -> dict[str, object]:
    return {
        "account_id": account,
        "request_id": f"rep-{i}",
        "model": model,
        "usage": {"input_tokens": 100, "output_tokens": 50},
        **extra,
    }


def test_reports_in_batches(client: MeteringClient, account: str, tmp_path: Path) -> None:
    outcomes: list[ReportOutcome] = []
    lock = threading.Lock()

    def on_outcome(o: ReportOutcome) -> None:
        with lock:
            outcomes.append(o)

    with UsageReporter(
        client, tmp_path / "spool.db", batch_size=10, flush_interval=0.05, on_outcome=on_outcome
    ) as reporter:
        for i in range(25):
            reporter.report(record(account, i, event_time=EVENT_TIME))
        # The same call reported twice (same payload, event_time included) is replayed.
        reporter.report(record(account, 0, event_time=EVENT_TIME))
        assert reporter.flush(10)
        assert reporter.pending() == 0
        assert reporter.stats.batches >= 3
        assert reporter.stats.recorded == 25 and reporter.stats.replayed == 1
    assert len(outcomes) == 26 and all(o.response is not None for o in outcomes)
    assert nanos(client.get_balance(account_id=account).balance) == 10 * 10**9 - 25 * 45_000


def test_event_time_is_stamped_at_report(
    client: MeteringClient, account: str, tmp_path: Path
) -> None:
    before = dt.datetime.now(dt.UTC)
    seen: list[ReportOutcome] = []
    with UsageReporter(client, tmp_path / "s.db", on_outcome=seen.append) as reporter:
        reporter.report(record(account, 1))
        assert reporter.flush(10)
    stamped = seen[0].request.event_time.ToDatetime(dt.UTC)
    assert before - dt.timedelta(seconds=1) <= stamped <= dt.datetime.now(dt.UTC)


def test_duplicate_report_without_event_time_is_a_conflict(
    client: MeteringClient, account: str, tmp_path: Path
) -> None:
    """Each report is stamped with its own time: reporting a call twice is visible."""
    with UsageReporter(client, tmp_path / "s.db") as reporter:
        reporter.report(record(account, 1))
        assert reporter.flush(10)
        reporter.report(record(account, 1))
        assert reporter.flush(10)
        [(request, error)] = reporter.dead_letters()
        assert request.request_id == "rep-1" and error.reason == "REQUEST_ID_CONFLICT"


def test_rejected_records_become_dead_letters_and_can_be_requeued(
    client: MeteringClient, account: str, tmp_path: Path
) -> None:
    outcomes: list[ReportOutcome] = []
    with UsageReporter(client, tmp_path / "s.db", on_outcome=outcomes.append) as reporter:
        reporter.report(record(account, 1))
        reporter.report(record(account, 2, model="py-later-priced"))
        assert reporter.flush(10)
        dead = reporter.dead_letters()
        assert [(r.request_id, e.reason) for r, e in dead] == [("rep-2", "PRICE_NOT_FOUND")]
        assert [o.error.reason for o in outcomes if o.error] == ["PRICE_NOT_FOUND"]
        # The operator adds the missing price (for this account only), then requeues.
        client.admin_stub.AddPrice(
            admin_service_pb2.AddPriceRequest(
                price=prices_pb2.PriceEntry(
                    price_id=f"{account}/py-later-priced",
                    provider="test",
                    model="py-later-priced",
                    account_id=account,
                    effective_time={"seconds": 946684800},  # 2000-01-01
                    input_per_million="1",
                    output_per_million="2",
                )
            )
        )
        assert reporter.requeue_dead_letters() == 1
        assert reporter.flush(10)
        assert reporter.dead_letters() == []
    # 45000 for rep-1; 100 x 1 + 50 x 2 USD per million = 200000 nanos for rep-2.
    assert nanos(client.get_balance(account_id=account).balance) == 10 * 10**9 - 45_000 - 200_000


def test_invalid_records_are_refused_locally(client: MeteringClient, tmp_path: Path) -> None:
    with UsageReporter(client, tmp_path / "s.db") as reporter:
        with pytest.raises(ValueError):
            reporter.report(account_id="a", model="gpt-4o-mini")
        with pytest.raises(ValueError):
            reporter.report(request_id="r", model="gpt-4o-mini")


def test_one_reporter_per_spool(client: MeteringClient, tmp_path: Path) -> None:
    with UsageReporter(client, tmp_path / "s.db"), pytest.raises(SpoolLockedError):
        UsageReporter(client, tmp_path / "s.db")
    UsageReporter(client, tmp_path / "s.db").close()  # free again


def test_spools_while_unreachable_and_replays_on_reopen(
    server: MeteringServer, account: str, tmp_path: Path
) -> None:
    spool = tmp_path / "s.db"
    dead_end = MeteringClient(f"127.0.0.1:{free_port()}", timeout=0.5)
    reporter = UsageReporter(dead_end, spool, flush_interval=0.01, max_backoff=0.1)
    for i in range(30):
        reporter.report(record(account, i))
    assert not reporter.close(timeout=0.5)  # could not send: kept
    dead_end.close()
    with sqlite3.connect(spool) as db:
        assert db.execute("SELECT count(*) FROM pending").fetchone() == (30,)
    with MeteringClient(server.address) as live, UsageReporter(live, spool) as again:
        assert again.pending() == 30
        assert again.flush(10)
        assert again.stats.recorded == 30
        assert nanos(live.get_balance(account_id=account).balance) == 10 * 10**9 - 30 * 45_000


def test_stream_without_usage_is_estimated_from_spooled_texts(
    client: MeteringClient, account: str, tmp_path: Path
) -> None:
    """A record without usage carries the streamed text through the spool; the service estimates."""
    seen: list[ReportOutcome] = []
    with UsageReporter(client, tmp_path / "s.db", on_outcome=seen.append) as reporter:
        reporter.report(
            account_id=account,
            request_id="no-usage",
            model="gpt-4o-mini",
            streamed=True,
            response_json=b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}\n\n'
            b"data: [DONE]\n\n",
            response_format="API_FORMAT_OPENAI_CHAT_COMPLETIONS",
            prompt_text="tiktoken is great!",
            completion_text="tiktoken is great!",
        )
        assert reporter.flush(10)
    (outcome,) = seen
    assert outcome.response is not None
    assert outcome.response.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED
    assert (outcome.response.usage.input_tokens, outcome.response.usage.output_tokens) == (6, 6)
    assert outcome.request.completion_text == "tiktoken is great!"
