"""Group commit: concurrent RecordUsage calls share one durable transaction.

Each call is queued as it came. One writer task per process takes everything
queued (up to ``batch_records_max``), waiting at most ``linger_seconds`` for
more once the first record arrived, and on its own thread validates and
prices the whole batch (:meth:`Metering.prepare_many`: a record's errors are
its own) and writes it with :meth:`Metering.write_usage_batch` in one
transaction: one thread hop per batch, not one per call. Every caller is
answered only after that transaction committed. While a transaction is in
flight new records queue up, so batches grow with load without adding
latency when the service is idle.

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
# What the writer thread did with a record: prepared (None if that failed) and the outcome.
_Written = tuple[PendingRecord | None, RecordResult | MeteringError]


class GroupCommitter:
    """Funnels records into shared transactions; one writer per process."""

    def __init__(
        self,
        metering: Metering,
        executor: ThreadPoolExecutor,
        linger_seconds: float = LINGER_SECONDS_DEFAULT,
        batch_records_max: int = BATCH_RECORDS_MAX_DEFAULT,
    ) -> None:
        self._metering = metering
        # The shared pool (kept in the signature) is no longer used here: the
        # writer prepares and writes each batch on a thread of its own, so the
        # shared pool's calls never wait behind a commit.
        self._executor = executor
        self._write_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metering-wr")
        self._linger_seconds = linger_seconds
        self._batch_records_max = batch_records_max
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = GroupCommitStats()

    def start(self) -> None:
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
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                if self._closing:
                    return
                continue
            waiting_since = time.monotonic()  # telemetry: group-commit wait
            if self._linger_seconds and len(self._queue) < self._batch_records_max:
                await asyncio.sleep(self._linger_seconds)
            batch = self._queue[: self._batch_records_max]
            del self._queue[: len(batch)]
            if not self._queue:
                self._wake.clear()
            self.stats.observe(len(batch))
            telemetry.observe_group_commit(len(batch), time.monotonic() - waiting_since)
            await self._write(loop, batch)

    def _prepare_and_write(self, cmds: list[RecordUsage]) -> list[_Written]:
        """On the writer thread: prepare the batch, write what was prepared in one transaction."""
        prepared = self._metering.prepare_many(cmds)
        pending = [item for item in prepared if isinstance(item, PendingRecord)]
        written = iter(self._metering.write_usage_batch(pending) if pending else [])
        return [
            (None, item) if isinstance(item, MeteringError) else (item, next(written))
            for item in prepared
        ]

    async def _write(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        cmds = [cmd for cmd, _ in batch]
        write_started = time.monotonic()  # telemetry: commit duration
        try:
            written = await loop.run_in_executor(
                self._write_executor, self._prepare_and_write, cmds
            )
        except Exception:  # the transaction failed as a whole: retry record by record
            log.warning("group commit of %d records failed; writing them one by one", len(batch))
            self.stats.fallbacks += 1
            written = []
            for cmd in cmds:
                try:
                    single = await loop.run_in_executor(
                        self._write_executor, self._prepare_and_write, [cmd]
                    )
                    written.append(single[0])
                except MeteringError as exc:
                    written.append((None, exc))
                except Exception:
                    log.exception("writing a usage record failed")
                    written.append(
                        (
                            None,
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
        self._write_executor.shutdown(wait=True)


# --- telemetry (metering.telemetry): what a group-commit write wrote ---------------------
def _record_telemetry(written: Sequence[_Written], write_seconds: float) -> None:
    """Records and cost written, by usage source, price-book provider and currency.

    Replays wrote nothing and are not counted; the provider is the price's (a
    price-book value), never the caller's free text.
    """
    try:
        telemetry.observe_group_commit_write(write_seconds)
        for item, outcome in written:
            if item is not None and isinstance(outcome, RecordResult) and not outcome.replayed:
                telemetry.record_usage(
                    outcome.usage_source.value,
                    item.price.provider if item.price is not None else "",
                    outcome.cost_nanos,
                    outcome.currency_code,
                    outcome.price_id,
                )
    except Exception:  # telemetry never keeps a caller from its answer
        log.exception("recording group-commit telemetry failed")
