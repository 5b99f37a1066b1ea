"""Group commit on real databases: shared transactions, exactly once, nothing lost on errors."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from metering.bootstrap import SystemClock
from metering.domain.errors import AlreadyExists, MeteringError
from metering.domain.usage import TokenUsage
from metering.service.commands import CreateAccount, GrantCredits, RecordUsage
from metering.service.group_commit import BatchWriter, GroupCommitter, ThreadWriter, WriterLost
from metering.service.handlers import Metering
from metering.service.prices import PriceBookCache, sync_catalogue
from metering.service.writer_process import ProcessWriter
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase, SqlStore
from tests.conftest import TEST_PRICES


class _FailingStore:
    """A store whose idempotency insert fails once per trigger: mid-transaction, after rows."""

    def __init__(self, store: SqlStore, trigger: dict[str, int]) -> None:
        self._store = store
        self._trigger = trigger

    def store_results(self, results: list[Any]) -> None:
        if len(results) > 1 and self._trigger["left"] > 0:
            self._trigger["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("injected: connection lost"))
        self._store.store_results(results)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class FlakyDatabase(SqlDatabase):
    """Fails the first multi-record batch transaction part-way through."""

    def __init__(self, engine: Any, failures: int) -> None:
        super().__init__(engine)
        self.trigger = {"left": failures}

    @contextmanager
    def write(self) -> Iterator[Any]:  # type: ignore[override]
        with super().write() as store:
            yield _FailingStore(store, self.trigger)


def _service(database_url: str, failures: int = 0) -> tuple[Metering, FlakyDatabase]:
    engine = make_engine(database_url)
    database = FlakyDatabase(engine, failures)
    clock = SystemClock()
    sync_catalogue(database, json.loads(TEST_PRICES.read_text()), "test", clock)
    return Metering(database, PriceBookCache(database), clock), database


def _usage(account: str, request_id: str, tokens: int = 13) -> RecordUsage:
    return RecordUsage(account, request_id, "cheap-model", usage=TokenUsage(input_tokens=tokens))


async def _run(
    metering: Metering, commands: list[RecordUsage], writer: BatchWriter | None = None
) -> tuple[list[Any], GroupCommitter]:
    committer = GroupCommitter(writer or ThreadWriter(metering), linger_seconds=0.002)
    await committer.start()
    try:
        results = await asyncio.gather(
            *(committer.record(cmd) for cmd in commands), return_exceptions=True
        )
    finally:
        await committer.close()
    return list(results), committer


def test_concurrent_records_share_transactions_exactly_once(database_url: str) -> None:
    metering, database = _service(database_url)
    accounts = [f"a{i}" for i in range(5)]
    for account in accounts:
        metering.create_account(CreateAccount(account))
        metering.grant_credits(GrantCredits(account, "g", amount_nanos=10**9, currency_code="USD"))
    # 300 calls: 100 distinct records, each sent three times, spread over 5 accounts.
    commands = [_usage(accounts[i % 5], f"r{i}") for i in range(100)] * 3
    results, committer = asyncio.run(_run(metering, commands))
    assert all(not isinstance(r, BaseException) for r in results)
    assert committer.stats.records == 300
    assert committer.stats.batches < 300  # calls really shared transactions
    assert max(committer.stats.batch_sizes) > 1
    by_key: dict[tuple[str, str], list[Any]] = {}
    for cmd, result in zip(commands, results, strict=True):
        by_key.setdefault((cmd.account_id, cmd.request_id), []).append(result)
    for answers in by_key.values():
        assert sum(not a.replayed for a in answers) == 1
        assert len({a.record_id for a in answers}) == 1
    with database.read() as store:
        assert store.count_usage_records() == 100
        assert store.verify_ledger().problems == []
    for account in accounts:
        assert metering.get_balance(account).balance_nanos == 10**9 - 20 * 650
    database.engine.dispose()


def test_a_failed_batch_is_written_record_by_record_and_loses_nothing(database_url: str) -> None:
    metering, database = _service(database_url, failures=1)
    metering.create_account(CreateAccount("a", allow_negative_balance=True))
    commands = [_usage("a", f"r{i}") for i in range(50)]
    commands.append(_usage("a", "r0", tokens=99))  # a conflicting payload for r0
    results, committer = asyncio.run(_run(metering, commands))
    assert committer.stats.fallbacks == 1
    assert database.trigger["left"] == 0
    acknowledged = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    # Every valid record was acknowledged after the failed batch; only the conflict failed.
    assert len(acknowledged) == 50
    assert len(failures) == 1 and isinstance(failures[0], AlreadyExists)
    with database.read() as store:
        assert store.count_usage_records("a") == 50  # exactly what was acknowledged
        assert store.verify_ledger().problems == []
    # Which of the two r0 payloads wins depends on which was prepared first; either way
    # the balance is exactly the acknowledged costs.
    assert metering.get_balance("a").balance_nanos == -sum(r.cost_nanos for r in acknowledged)
    database.engine.dispose()


def test_one_bad_record_does_not_fail_its_batch(database_url: str) -> None:
    metering, database = _service(database_url)
    metering.create_account(CreateAccount("a", allow_negative_balance=True))
    commands = [_usage("a", f"r{i}") for i in range(20)]
    commands.insert(7, RecordUsage("a", "bad", "no-such-model", usage=TokenUsage(1)))
    commands.insert(3, RecordUsage("nobody", "x", "cheap-model", usage=TokenUsage(1)))
    results, _ = asyncio.run(_run(metering, commands))
    errors = [r for r in results if isinstance(r, MeteringError)]
    assert sorted(e.reason for e in errors) == ["ACCOUNT_NOT_FOUND", "PRICE_NOT_FOUND"]
    with database.read() as store:
        assert store.count_usage_records("a") == 20
    database.engine.dispose()


class _CrashingMetering(Metering):
    """Dies (as a killed process would) right after committing a batch holding a call
    whose request id starts with "crash": the worst moment, durable but unanswered."""

    def write_usage_batch(self, batch: Any) -> Any:
        results = super().write_usage_batch(batch)
        if any(p.command.request_id.startswith("crash") for p in batch):
            os._exit(3)
        return results


def _writer_service(database_url: str, crashing: bool = False) -> Metering:
    """The writer process's service (pickled to it by reference: module level)."""
    database = SqlDatabase(make_engine(database_url, pool_size=2))
    book = PriceBookCache(database)
    return (_CrashingMetering if crashing else Metering)(database, book, SystemClock())


def test_a_writer_process_records_exactly_once(database_url: str) -> None:
    metering, database = _service(database_url)
    accounts = [f"p{i}" for i in range(4)]
    for account in accounts:
        metering.create_account(CreateAccount(account))
        metering.grant_credits(GrantCredits(account, "g", amount_nanos=10**9, currency_code="USD"))
    commands = [_usage(accounts[i % 4], f"r{i}") for i in range(80)] * 2
    commands.append(RecordUsage("p0", "bad", "no-such-model", usage=TokenUsage(1)))
    writer = ProcessWriter(functools.partial(_writer_service, database_url))
    results, committer = asyncio.run(_run(metering, commands, writer))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], MeteringError)
    assert errors[0].reason == "PRICE_NOT_FOUND"  # an error crosses the process as itself
    assert max(committer.stats.batch_sizes) > 1
    answers: dict[str, list[Any]] = {}
    for cmd, result in zip(commands[:-1], results[:-1], strict=True):
        answers.setdefault(cmd.request_id, []).append(result)
    assert all(sum(not a.replayed for a in pair) == 1 for pair in answers.values())
    with database.read() as store:
        assert store.count_usage_records() == 80
        assert store.verify_ledger().problems == []
    for account in accounts:
        assert metering.get_balance(account).balance_nanos == 10**9 - 20 * 650
    database.engine.dispose()


def test_a_writer_process_that_dies_is_replaced_and_retries_count_once(database_url: str) -> None:
    metering, database = _service(database_url)
    metering.create_account(CreateAccount("a", allow_negative_balance=True))
    writer = ProcessWriter(functools.partial(_writer_service, database_url, crashing=True))

    async def scenario() -> tuple[list[Any], list[Any]]:
        committer = GroupCommitter(writer, linger_seconds=0.002)
        await committer.start()
        try:
            calls = [_usage("a", "crash-1"), _usage("a", "ok-1")]
            first = await asyncio.gather(
                *(committer.record(cmd) for cmd in calls), return_exceptions=True
            )
            # The callers retry with the same request ids, as told; the new writer answers.
            again = [_usage("a", "ok-1"), _usage("a", "ok-2")]
            second = await asyncio.gather(
                *(committer.record(cmd) for cmd in again), return_exceptions=True
            )
        finally:
            await committer.close()
        return list(first), list(second)

    first, second = asyncio.run(scenario())
    # The batch committed, then its writer died unanswered: the callers are told to retry.
    assert all(isinstance(r, WriterLost) and r.reason == "WRITER_RESTARTED" for r in first)
    assert [r.replayed for r in second] == [True, False]  # ok-1 was durable: counted once
    with database.read() as store:
        assert store.count_usage_records("a") == 3
        assert store.verify_ledger().problems == []
    database.engine.dispose()


def _unopenable_service(database_url: str) -> Metering:
    raise RuntimeError(f"cannot open {database_url}")


def test_a_writer_process_that_cannot_start_fails_the_start_and_is_retried_later(
    database_url: str,
) -> None:
    writer = ProcessWriter(functools.partial(_unopenable_service, database_url))

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="did not start"):
            await writer.start()
        # Meanwhile a record is refused as retryable, not left waiting.
        with pytest.raises(WriterLost):
            await writer.write([_usage("a", "r1")])
        await writer.close()

    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def _quiet_fallback_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="metering.service.group_commit")
