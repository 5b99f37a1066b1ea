"""A background usage reporter with a durable SQLite spool.

A relay calls :meth:`UsageReporter.report` at the end of each LLM call. The
record is first appended to a local SQLite file (the *spool*, in WAL mode) and
the call returns; a background thread sends spooled records to the service in
RecordUsageBatch calls and deletes each one once the service has acknowledged
it. While the service is unreachable, records stay in the spool and are
retried with capped exponential backoff and jitter; when the relay restarts,
the new reporter replays whatever the previous process left. Because every
record keeps its ``request_id`` and the service is idempotent per
(account, request_id), a record sent twice (e.g. the process died after the
service committed a batch but before the spool was updated) is recorded once.

Records the service rejects for good (INVALID_ARGUMENT, ACCOUNT_NOT_FOUND,
PRICE_NOT_FOUND, REQUEST_ID_CONFLICT, ...) are moved to a dead-letter table of
the same file rather than dropped; see :meth:`UsageReporter.dead_letters` and
:meth:`UsageReporter.requeue_dead_letters`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from metering_client._common import DEFAULT_TIMEOUT, Metadata, build_request, merge_metadata
from metering_client.client import MeteringClient
from metering_client.errors import (
    FieldViolation,
    MeteringError,
    error_class,
    from_record_error,
    from_rpc_error,
)
from metering_client.v1 import metering_service_pb2 as pb

try:  # POSIX: one reporter per spool file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Codes after which a record (or a whole batch) is kept and retried later.
TRANSIENT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
#: Codes of a *whole batch* failure after which records are sent one by one.
_SPLIT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: RecordUsageBatch's limit.
MAX_BATCH = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    spooled_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class ReportOutcome:
    """The final outcome of one reported record, passed to ``on_outcome``.

    Exactly one of ``response`` (recorded, or ``response.replayed`` when it had
    already been) and ``error`` (rejected for good; kept as a dead letter) is set.
    """

    request: pb.RecordUsageRequest
    response: pb.RecordUsageResponse | None = None
    error: MeteringError | None = None


@dataclass
class ReporterStats:
    """Counters since the reporter started."""

    reported: int = 0
    recorded: int = 0
    replayed: int = 0
    dead: int = 0
    batches: int = 0
    failed_batches: int = 0


class SpoolLockedError(RuntimeError):
    """Another process owns the spool file."""


class UsageReporter:
    """Reports usage records in the background, durably.

    Args:
        client: a :class:`MeteringClient` (not closed by the reporter) or a
            target ``host:port`` (the reporter then owns its client).
        spool_path: the SQLite spool file; created if missing. ``None`` keeps
            the spool in memory (nothing survives the process: tests only).
        batch_size: the most records per RecordUsageBatch call (at most 1000).
        flush_interval: the longest a record waits for a batch to fill, seconds.
        timeout: the deadline of each RecordUsageBatch call, seconds.
        initial_backoff, max_backoff: the cap of the first and of any wait
            after a failed send (full jitter, doubling per failure).
        on_outcome: called on the reporter's thread with a
            :class:`ReportOutcome` for every record that was recorded or
            rejected for good. Exceptions it raises are logged and ignored.
        synchronous: SQLite's ``synchronous`` setting for the spool. ``"NORMAL"``
            (the default, in WAL mode) survives a crash or kill of the process;
            ``"FULL"`` also survives a power loss, at an fsync per report.
        metadata: metadata sent with every call.
        stamp_event_time: set a record's missing ``event_time`` to the time of
            :meth:`report`, so that a record sent late (after an outage) is
            priced and summarized at the time of the call. The stamp is part
            of the payload: reporting the *same* call twice then gives
            REQUEST_ID_CONFLICT (a dead letter) instead of a replay; set
            ``event_time`` yourself if a call may be reported more than once.
        start: start the background thread now (else call :meth:`start`).

    Only one reporter (process) may use a spool file at a time; a second one
    raises :class:`SpoolLockedError`.

    The reporter is thread-safe and may be used from asyncio code (``report``
    only appends to the spool). Close it with :meth:`close`, or use it as a
    context manager.
    """

    def __init__(
        self,
        client: MeteringClient | str,
        spool_path: str | os.PathLike[str] | None,
        *,
        batch_size: int = 100,
        flush_interval: float = 0.2,
        timeout: float = DEFAULT_TIMEOUT,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_outcome: Callable[[ReportOutcome], None] | None = None,
        synchronous: str = "NORMAL",
        metadata: Metadata = (),
        stamp_event_time: bool = True,
        start: bool = True,
    ) -> None:
        """Open (or create) the spool and start sending; see the class docstring."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in [1, {MAX_BATCH}]")
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        self._own_client = isinstance(client, str)
        self._client = MeteringClient(client) if isinstance(client, str) else client
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._timeout = timeout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._on_outcome = on_outcome
        self._metadata = tuple(metadata)
        self._stamp = stamp_event_time
        self.stats = ReporterStats()
        """Counters since start (not persisted)."""

        self._lock_file: Any = None
        self.spool_path = Path(spool_path) if spool_path is not None else None
        if self.spool_path is not None:
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            self._acquire_lock(self.spool_path)
        self._db = sqlite3.connect(
            str(self.spool_path) if self.spool_path is not None else ":memory:",
            check_same_thread=False,
            isolation_level=None,  # autocommit; explicit transactions below
            timeout=30.0,
        )
        self._db_lock = threading.Lock()
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            (count,) = self._db.execute("SELECT count(*) FROM pending").fetchone()

        self._cond = threading.Condition()
        self._pending = int(count)  # guarded by _cond
        # Leftovers from a previous process are due at once.
        self._oldest: float | None = 0.0 if count else None
        self._flush_requests = 0
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- lifecycle -----------------------------------------------------------------

    def _acquire_lock(self, path: Path) -> None:
        if fcntl is None:  # pragma: no cover
            return
        handle = open(str(path) + ".lock", "a+")  # noqa: SIM115 - held for the reporter's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise SpoolLockedError(f"spool {path} is in use by another process") from exc
        self._lock_file = handle

    def start(self) -> None:
        """Start the background sender thread (done by the constructor unless ``start=False``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="metering-usage-reporter", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for up to ``timeout`` seconds, then stop; return whether all was sent.

        Whatever could not be sent stays in the spool and is replayed by the
        next reporter that opens it.
        """
        if self._closed:
            return self.pending() == 0
        drained = self.flush(timeout) if self._thread is not None else self.pending() == 0
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self._timeout + 1.0)
        self._closed = True
        with self._db_lock:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
        if self._own_client:
            self._client.close()
        return drained

    def __enter__(self) -> UsageReporter:
        """Return the reporter."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the reporter (see :meth:`close`)."""
        self.close()

    # -- the public surface ------------------------------------------------------------

    def report(
        self,
        request: pb.RecordUsageRequest | Mapping[str, Any] | None = None,
        /,
        **fields: Any,
    ) -> None:
        """Append one usage record to the spool; it is sent in the background.

        Takes a ``RecordUsageRequest`` (or its fields as keywords). When it
        returns, the record is in the spool file and survives a crash of the
        process. ``event_time`` is set to now when missing (see
        ``stamp_event_time``), so a record sent late is priced at the time of
        the call.

        Raises:
            ValueError: ``account_id`` or ``request_id`` is empty (the service
                would reject the record; the idempotency key is required).
            RuntimeError: the reporter is closed.
        """
        req = build_request(pb.RecordUsageRequest, request, fields)
        if not req.account_id or not req.request_id:
            raise ValueError("account_id and request_id are required")
        if self._stamp and not req.HasField("event_time"):
            req.event_time.GetCurrentTime()
            req.event_time.nanos = req.event_time.nanos // 1000 * 1000  # microseconds
        payload = req.SerializeToString(deterministic=True)
        with self._db_lock:
            if self._closed:
                raise RuntimeError("the reporter is closed")
            self._db.execute(
                "INSERT INTO pending (account_id, request_id, payload, spooled_at) "
                "VALUES (?, ?, ?, ?)",
                (req.account_id, req.request_id, payload, time.time()),
            )
        with self._cond:
            self.stats.reported += 1
            self._pending += 1
            if self._oldest is None:
                self._oldest = time.monotonic()
            if self._pending >= self._batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything spooled now; wait until done or ``timeout`` seconds passed.

        Returns True when the spool is empty (dead letters aside).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requests += 1
            self._cond.notify_all()
            try:
                while self._pending > 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flush_requests -= 1

    def pending(self) -> int:
        """The number of records in the spool not yet acknowledged by the service."""
        with self._cond:
            return self._pending

    def dead_letters(self) -> list[tuple[pb.RecordUsageRequest, MeteringError]]:
        """The records the service rejected for good, with their errors, oldest first."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT payload, code, reason, message, fields FROM dead ORDER BY seq"
            ).fetchall()
        out = []
        for payload, code, reason, message, fields in rows:
            err_code = getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN)
            err = error_class(err_code)(
                message,
                code=err_code,
                reason=reason,
                field_violations=[FieldViolation(f) for f in json.loads(fields)],
            )
            out.append((pb.RecordUsageRequest.FromString(payload), err))
        return out

    def requeue_dead_letters(self) -> int:
        """Move every dead letter back to the spool (e.g. after adding a missing price)."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO pending (account_id, request_id, payload, spooled_at) "
                    "SELECT account_id, request_id, payload, ? FROM dead ORDER BY seq",
                    (time.time(),),
                )
                moved = cur.rowcount
                self._db.execute("DELETE FROM dead")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        with self._cond:
            self._pending += moved
            if moved and self._oldest is None:
                self._oldest = 0.0
            self._cond.notify_all()
        return moved

    # -- the sender ----------------------------------------------------------------------

    def _due(self) -> bool:
        if self._pending == 0:
            return False
        if self._flush_requests or self._pending >= self._batch_size:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self._flush_interval

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._stopping and not self._due():
                    wait = None
                    if self._pending and self._oldest is not None:
                        wait = max(0.0, self._flush_interval - (time.monotonic() - self._oldest))
                    self._cond.wait(wait)
                if self._stopping:
                    return
            try:
                ok = self._send_once()
            except Exception:  # the thread must survive anything
                log.exception("usage reporter: unexpected error; will retry")
                ok = False
            if ok:
                failures = 0
                continue
            failures += 1
            self.stats.failed_batches += 1
            cap = min(self._max_backoff, self._initial_backoff * 2 ** (failures - 1))
            delay = random.uniform(cap / 2, cap)
            with self._cond:
                if not self._stopping:
                    self._cond.wait(delay)

    def _read_batch(self) -> list[tuple[int, bytes]]:
        with self._db_lock:
            if self._closed:
                return []
            return self._db.execute(
                "SELECT seq, payload FROM pending ORDER BY seq LIMIT ?", (self._batch_size,)
            ).fetchall()

    def _send_once(self) -> bool:
        """Send one batch; True when progress was made (or nothing was due)."""
        rows = self._read_batch()
        if not rows:
            with self._cond:
                self._pending = 0
                self._oldest = None
                self._cond.notify_all()
            return True
        requests = [pb.RecordUsageRequest.FromString(p) for _, p in rows]
        self.stats.batches += 1
        try:
            resp = self._client.stub.RecordUsageBatch(
                pb.RecordUsageBatchRequest(records=requests),
                timeout=self._timeout,
                metadata=merge_metadata(self._metadata, None),
            )
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            if err.code in _SPLIT_CODES:
                log.warning("usage reporter: batch refused (%s); sending one by one", err)
                return self._send_singly(rows, requests)
            log.info("usage reporter: %d records kept for retry: %s", len(rows), err)
            return False
        if len(resp.results) != len(rows):
            log.error("usage reporter: %d results for %d records", len(resp.results), len(rows))
            return False
        outcomes: list[tuple[int, pb.RecordUsageRequest, Any]] = []
        for (seq, _), req, result in zip(rows, requests, resp.results, strict=True):
            if result.HasField("response"):
                outcomes.append((seq, req, result.response))
            else:
                err = from_record_error(result.error)
                outcomes.append((seq, req, err))
        return self._settle(outcomes)

    def _send_singly(
        self, rows: Sequence[tuple[int, bytes]], requests: Sequence[pb.RecordUsageRequest]
    ) -> bool:
        outcomes: list[tuple[int, pb.RecordUsageRequest, Any]] = []
        for (seq, _), req in zip(rows, requests, strict=True):
            try:
                response = self._client.stub.RecordUsage(
                    req, timeout=self._timeout, metadata=merge_metadata(self._metadata, None)
                )
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if err.code in TRANSIENT_CODES:
                    break
                outcomes.append((seq, req, err))
                continue
            outcomes.append((seq, req, response))
        return self._settle(outcomes) and len(outcomes) == len(rows)

    def _settle(self, outcomes: Sequence[tuple[int, pb.RecordUsageRequest, Any]]) -> bool:
        """Delete acknowledged records, move rejected ones to dead letters."""
        done: list[int] = []
        dead: list[tuple[int, pb.RecordUsageRequest, MeteringError]] = []
        final: list[ReportOutcome] = []
        kept = 0
        for seq, req, result in outcomes:
            if isinstance(result, MeteringError):
                if result.code in TRANSIENT_CODES:
                    kept += 1
                    continue
                dead.append((seq, req, result))
                final.append(ReportOutcome(req, error=result))
            else:
                done.append(seq)
                final.append(ReportOutcome(req, response=result))
                if result.replayed:
                    self.stats.replayed += 1
                else:
                    self.stats.recorded += 1
        if done or dead:
            with self._db_lock:
                if self._closed:
                    return False
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    now = time.time()
                    for seq, _req, err in dead:
                        self._db.execute(
                            "INSERT OR REPLACE INTO dead (seq, account_id, request_id, payload, "
                            "code, reason, message, fields, failed_at) "
                            "SELECT seq, account_id, request_id, payload, ?, ?, ?, ?, ? "
                            "FROM pending WHERE seq = ?",
                            (
                                err.code.name,
                                err.reason,
                                err.message,
                                json.dumps(err.fields),
                                now,
                                seq,
                            ),
                        )
                    gone = done + [d[0] for d in dead]
                    self._db.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in gone])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            self.stats.dead += len(dead)
        for _, req, err in dead:
            log.warning(
                "usage reporter: record %s/%s rejected (kept as dead letter): %s",
                req.account_id,
                req.request_id,
                err,
            )
        # Outcomes before the pending count drops: flush() returns only after the callback
        # has seen every record it waited for.
        if self._on_outcome is not None:
            for outcome in final:
                try:
                    self._on_outcome(outcome)
                except Exception:
                    log.exception("usage reporter: on_outcome raised")
        if done or dead:
            with self._cond:
                self._pending = max(0, self._pending - len(done) - len(dead))
                if self._pending == 0:
                    self._oldest = None
                self._cond.notify_all()
        return kept == 0
