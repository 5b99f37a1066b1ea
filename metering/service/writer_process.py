"""The usage writer in a process of its own.

A server process runs gRPC on its event loop and, until this module, the
group commit's writer on a thread beside it: both are Python, so they took
turns on one GIL, and the server used one core whatever the machine had
(measured: ~100 % of a core at any load, RecordUsage ~480 us of CPU per call
of which ~150 us were the writer's). Here the writer's half (validate, price,
write, commit) runs in a child process: the two halves run on two cores, and
a batch crosses between them pickled, once per batch.

What a caller is told does not change: the child answers after its
transaction committed, and the server acknowledges after the child answered.
If the child dies with a batch, whether that batch committed is unknown; its
callers get UNAVAILABLE (WriterLost) and retry with the same request ids,
which records each call once either way, and a new child is started.

The child is started with ``spawn`` (a forked gRPC server is not safe to
use in the child), ignores SIGINT (the server shuts it down after draining
the queue) and ends when the server's end of the pipe closes.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from metering.domain.errors import MeteringError
from metering.service.commands import RecordUsage
from metering.service.group_commit import WriterLost, Written, prepare_and_write
from metering.service.handlers import BudgetCrossing, Metering, report_budget_crossings

log = logging.getLogger(__name__)

# How long a new writer process may take to open the database and read the prices.
START_TIMEOUT_SECONDS = 60.0
# A child that dies before it is ready (the database unreachable, say) is started
# again after a pause that doubles up to the maximum, not in a tight loop.
RESTART_DELAY_SECONDS = 0.5
RESTART_DELAY_MAX_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class BatchFailed(RuntimeError):
    """The child's transaction failed as a whole with an error that is not a
    MeteringError (which crosses as itself); the server then writes the batch
    record by record, as it does with a writer thread."""


def _child_main(conn: Connection, factory: Callable[[], Metering]) -> None:
    """The writer process: one batch at a time, answered in order, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    metering = factory()
    crossings: list[BudgetCrossing] = []
    # Crossings are reported by the server (its metrics exporters), after the answer.
    metering.on_budget_crossings = crossings.extend
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process (see cli._freeze_heap)
    conn.send(("ready",))
    while True:
        try:
            cmds = conn.recv()
        except (EOFError, OSError):  # the server is gone or closed the pipe: stop
            return
        crossings.clear()
        reply: tuple[Any, ...]
        try:
            reply = ("ok", prepare_and_write(metering, cmds), list(crossings))
        except MeteringError as exc:
            reply = ("error", exc)
        except Exception as exc:
            # Driver exceptions need not survive pickling; their text does.
            log.warning("usage batch of %d records failed", len(cmds), exc_info=True)
            reply = ("error", BatchFailed(f"{type(exc).__name__}: {exc}"[:500]))
        try:
            conn.send(reply)
        except OSError:  # the server is gone; what committed is found by its retries
            return


class ProcessWriter:
    """A group-commit writer (metering.service.group_commit.BatchWriter) in a child process.

    The server's event loop talks to the child over a pipe it watches itself
    (``add_reader``): no thread of the server takes part, so an answer does
    not wait for a thread to get the GIL from a busy event loop (with a
    ProcessPoolExecutor, three such hops cost ~2 ms per batch under load).

    ``factory`` builds the child's Metering; it is pickled to the child, so it
    must be a module-level function or a functools.partial of one.
    """

    def __init__(self, factory: Callable[[], Metering]) -> None:
        self._factory = factory
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready: asyncio.Future[None] | None = None
        self._waiting: collections.deque[asyncio.Future[tuple[Any, ...]]] = collections.deque()
        self._closing = False
        self._restart_delay = RESTART_DELAY_SECONDS

    async def start(self) -> None:
        self._spawn()
        assert self._ready is not None
        await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_SECONDS)

    def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        # spawn: a fork of a process running a gRPC server is not safe to use.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=_child_main, args=(theirs, self._factory), name="metering-writer", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable, ours)

    def _readable(self, conn: Connection) -> None:
        if conn is not self._conn:
            return
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "ready":
                    assert self._ready is not None
                    if not self._ready.done():
                        self._ready.set_result(None)
                    self._restart_delay = RESTART_DELAY_SECONDS
                elif self._waiting:
                    waiting = self._waiting.popleft()
                    if not waiting.done():
                        waiting.set_result(message)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        """The child is gone: fail what it had, start another (unless stopping)."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        if process is not None:
            process.join(timeout=0)
        started = self._ready is not None and self._ready.done()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("the usage writer process did not start"))
            self._ready.exception()  # retrieved: write() and start() see it through shield
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.done():
                waiting.set_exception(WriterLost())
        if self._closing:
            return
        if started:
            log.error("the usage writer process stopped; starting a new one")
            self._spawn()
            return
        delay, self._restart_delay = (
            self._restart_delay,
            min(self._restart_delay * 2, RESTART_DELAY_MAX_SECONDS),
        )
        log.error("the usage writer process did not start; trying again in %.1f s", delay)
        asyncio.get_running_loop().call_later(delay, self._respawn)

    def _respawn(self) -> None:
        if not self._closing and self._conn is None:
            self._spawn()

    async def write(self, cmds: list[RecordUsage]) -> list[Written]:
        if self._ready is None:
            raise RuntimeError("start() the writer first")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_SECONDS)
        except (RuntimeError, TimeoutError):  # no writer now; it is being started again
            raise WriterLost() from None
        conn = self._conn
        if conn is None:
            raise WriterLost()
        answer: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        try:
            conn.send(cmds)
        except OSError:  # the child died: its end of the pipe is closed
            self._lost()
        reply = await answer
        if reply[0] == "error":
            raise reply[1]
        _, written, crossings = reply
        if crossings:
            report_budget_crossings(crossings)
        return list(written)

    async def close(self) -> None:
        self._closing = True
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()  # the child reads EOF after its last batch and returns
        if process is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, process.join, STOP_TIMEOUT_SECONDS
            )
            if process.is_alive():
                log.warning("the usage writer process did not stop; terminating it")
                process.terminate()
