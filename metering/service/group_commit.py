"""Group commit: concurrent RecordUsage calls share one durable transaction.

Each call is queued as it came. One writer per server process takes everything
queued (up to ``batch_records_max``), validates and prices the whole batch
(:meth:`Metering.prepare_many`: a record's errors are its own) and writes it
with :meth:`Metering.write_usage_batch` in one transaction: one hop to the
writer per batch, not one per call. Every caller is answered only after that
transaction committed. While a batch is being written new records queue up and
go as the next batch the moment it is done, so batches grow with load; only the
first record after an idle spell waits (``linger_seconds``) for company.

The writer (:class:`BatchWriter`) is a thread of this process
(:class:`ThreadWriter`) or a process of its own
(metering.service.writer_process.ProcessWriter, what ``serve`` uses).

If a batch fails as a whole (the database refused the transaction), it is
written again record by record, so one record cannot fail the others and
each caller gets the answer its own record deserves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from metering import telemetry
from metering.domain.errors import MeteringError, Unavailable
from metering.service.commands import RecordResult, RecordUsage
from metering.service.handlers import Metering, PendingRecord

log = logging.getLogger(__name__)

LINGER_SECONDS_DEFAULT = 0.002
BATCH_RECORDS_MAX_DEFAULT = 500


@dataclass
class GroupCommitStats:
    """Counters for observability and tests."""

    batches: int = 0
    records: int = 0
    fallbacks: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def observe(self, size: int) -> None:
        self.batches += 1
        self.records += size
        if len(self.batch_sizes) < 10_000:
            self.batch_sizes.append(size)


_Item = tuple[RecordUsage, "asyncio.Future[RecordResult | MeteringError]"]
# What the writer did with a record: the price book's provider of its price (a telemetry
# label; "" when it has none) and the outcome.
Written = tuple[str, RecordResult | MeteringError]


def prepare_and_write(metering: Metering, cmds: Sequence[RecordUsage]) -> list[Written]:
    """Prepare a batch and write what was prepared in one transaction (on the writer)."""
    prepared = metering.prepare_many(cmds)
    pending = [item for item in prepared if isinstance(item, PendingRecord)]
    written = iter(metering.write_usage_batch(pending) if pending else [])
    out: list[Written] = []
    for item in prepared:
        if isinstance(item, MeteringError):
            out.append(("", item))
        else:
            out.append((item.price.provider if item.price is not None else "", next(written)))
    return out


class BatchWriter(Protocol):
    """Where batches are prepared and written: a thread of this process, or another process."""

    async def start(self) -> None: ...

    async def write(self, cmds: list[RecordUsage]) -> list[Written]:
        """One transaction for the batch; raises when it failed as a whole."""
        ...

    async def close(self) -> None: ...


class ThreadWriter:
    """Writes on one thread of this process (the writer shares the GIL with the server)."""

    def __init__(self, metering: Metering) -> None:
        self._metering = metering
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metering-wr")

    async def start(self) -> None:
        return None

    async def write(self, cmds: list[RecordUsage]) -> list[Written]:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, prepare_and_write, self._metering, cmds
        )

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


class WriterLost(Unavailable):
    """The writer stopped while it had the batch (its process died): whether the batch
    committed is unknown, so every caller is told to retry with the same request id,
    which records it once either way."""

    def __init__(self) -> None:
        super().__init__("WRITER_RESTARTED", "the usage writer restarted; retry")


class GroupCommitter:
    """Funnels records into shared transactions; one writer per process."""

    def __init__(
        self,
        writer: BatchWriter,
        linger_seconds: float = LINGER_SECONDS_DEFAULT,
        batch_records_max: int = BATCH_RECORDS_MAX_DEFAULT,
    ) -> None:
        self._writer = writer
        self._linger_seconds = linger_seconds
        self._batch_records_max = batch_records_max
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = GroupCommitStats()

    async def start(self) -> None:
        """Start the writer (a process takes a moment), then take records."""
        await self._writer.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def record(self, cmd: RecordUsage) -> RecordResult:
        """Record one call; returns after its transaction committed (raises its error)."""
        result = (await self.record_many([cmd]))[0]
        if isinstance(result, MeteringError):
            raise result
        return result

    async def record_many(
        self, cmds: Sequence[RecordUsage | MeteringError]
    ) -> list[RecordResult | MeteringError]:
        """Record several calls; a result or an error per call, in order."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[RecordResult | MeteringError] | None] = []
        for cmd in cmds:
            if isinstance(cmd, MeteringError):
                futures.append(None)
                continue
            future: asyncio.Future[RecordResult | MeteringError] = loop.create_future()
            self._queue.append((cmd, future))
            futures.append(future)
        self._wake.set()
        results: list[RecordResult | MeteringError] = []
        for cmd, waiting in zip(cmds, futures, strict=True):
            if waiting is None:
                assert isinstance(cmd, MeteringError)
                results.append(cmd)
            else:
                results.append(await waiting)
        return results

    async def _run(self) -> None:
        # One batch with the writer at a time: two in flight made batches half as big,
        # and a batch's fixed cost (the commit, the account and idempotency reads)
        # dominates; measured slower (bench/run, #8).
        backlog = False
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                backlog = False
                if self._closing:
                    return
                continue
            waiting_since = time.monotonic()  # telemetry: group-commit wait
            # The first record after an idle spell lingers for company; records that
            # queued while the writer was busy waited long enough already.
            if self._linger_seconds and not backlog and len(self._queue) < self._batch_records_max:
                await asyncio.sleep(self._linger_seconds)
            batch = self._queue[: self._batch_records_max]
            del self._queue[: len(batch)]
            if not self._queue:
                self._wake.clear()
            self.stats.observe(len(batch))
            telemetry.observe_group_commit(len(batch), time.monotonic() - waiting_since)
            await self._write(batch)
            backlog = bool(self._queue)

    async def _write(self, batch: list[_Item]) -> None:
        cmds = [cmd for cmd, _ in batch]
        write_started = time.monotonic()  # telemetry: commit duration
        written: list[Written]
        try:
            written = await self._writer.write(cmds)
        except WriterLost as exc:  # whether the batch committed is unknown: the callers retry
            written = [("", exc)] * len(cmds)
        except Exception:  # the transaction failed as a whole: retry record by record
            log.warning("group commit of %d records failed; writing them one by one", len(batch))
            self.stats.fallbacks += 1
            written = []
            for cmd in cmds:
                try:
                    written.append((await self._writer.write([cmd]))[0])
                except MeteringError as exc:
                    written.append(("", exc))
                except Exception:
                    log.exception("writing a usage record failed")
                    written.append(
                        (
                            "",
                            Unavailable("DATABASE_ERROR", "the record could not be written; retry"),
                        )
                    )
        _record_telemetry(written, time.monotonic() - write_started)  # telemetry
        for (_, future), (_, outcome) in zip(batch, written, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._writer.close()


# --- telemetry (metering.telemetry): what a group-commit write wrote ---------------------
def _record_telemetry(written: Sequence[Written], write_seconds: float) -> None:
    """Records and cost written, by usage source, price-book provider and currency.

    Replays wrote nothing and are not counted; the provider is the price's (a
    price-book value), never the caller's free text.
    """
    try:
        telemetry.observe_group_commit_write(write_seconds)
        for provider, outcome in written:
            if isinstance(outcome, RecordResult) and not outcome.replayed:
                telemetry.record_usage(
                    outcome.usage_source.value,
                    provider,
                    outcome.cost_nanos,
                    outcome.currency_code,
                    outcome.price_id,
                )
    except Exception:  # telemetry never keeps a caller from its answer
        log.exception("recording group-commit telemetry failed")
