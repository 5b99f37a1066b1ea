"""Engine construction for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

SUPPORTED_DIALECTS = ("sqlite", "postgresql")

log = logging.getLogger(__name__)

# SQLite WAL checkpoints (copying committed pages from the WAL into the database
# file, with an fsync of the file) run on a thread of their own every
# CHECKPOINT_INTERVAL_SECONDS instead of inside a commit every 1,000 pages: with
# a usage batch dirtying hundreds of pages, every second or third commit paid
# for a checkpoint. A commit is as durable as before: synchronous=FULL syncs the
# WAL at each commit; a checkpoint only moves what is already durable. The
# writers' own autocheckpoint stays as a backstop at a larger size.
CHECKPOINT_INTERVAL_SECONDS = 0.2
WAL_AUTOCHECKPOINT_PAGES = 20_000
# A WAL longer than this is checkpointed once with the writers held off, so that
# it is copied completely and the next writer starts it again from the beginning
# (under a steady stream of commits a concurrent checkpoint never catches up).
CHECKPOINT_RESTART_FRAMES = 4_000


def make_engine(
    database_url: str, pool_size: int = 8, *, background_checkpoints: bool = True
) -> Engine:
    """An engine with the durability and locking settings metering relies on.

    SQLite: WAL journal with ``synchronous=FULL`` (a commit is on disk before
    it is acknowledged), a busy timeout for other processes, and write
    transactions started with ``BEGIN IMMEDIATE`` so that two writers never
    deadlock upgrading read locks. PostgreSQL: psycopg 3, READ COMMITTED;
    writers lock the account row first (``SELECT ... FOR UPDATE``).
    """
    url = make_url(database_url)
    if url.get_backend_name() not in SUPPORTED_DIALECTS:
        raise ValueError(
            f"unsupported database {url.get_backend_name()!r}; use sqlite or postgresql"
        )
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=0,
        )
        _configure_sqlite(engine, url.database, background_checkpoints)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_timeout=10,
        # Fail fast instead of hanging when the server is unreachable, and notice a
        # server that stops answering: TCP keepalives, and at most 10 s of unacknowledged
        # data before the connection is declared dead.
        connect_args={
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        },
    )


def sqlite_file(database_url: str | URL) -> str | None:
    """The file of a SQLite database named by a plain path; None for PostgreSQL, an
    in-memory database or a ``file:`` URI (which may name shared memory)."""
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    return None if str(database).startswith("file:") else str(database)


def _configure_sqlite(engine: Engine, database: str | None, background_checkpoints: bool) -> None:
    file_backed = sqlite_file(engine.url) is not None
    checkpointer: list[_Checkpointer] = []
    checkpointer_guard = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so the
        # "begin" hook below decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if file_backed:
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("metering_readonly"):
            connection.exec_driver_sql("BEGIN")
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        if background_checkpoints and file_backed and not checkpointer:
            with checkpointer_guard:
                if not checkpointer:  # the first write starts this engine's checkpointer
                    assert database is not None
                    checkpointer.append(_Checkpointer(engine, database))
                    checkpointer[0].start()

    @event.listens_for(engine, "engine_disposed")
    def _on_dispose(_engine: Any) -> None:
        if checkpointer:
            checkpointer[0].stop()


class _Checkpointer(threading.Thread):
    """Checkpoints one SQLite database's WAL in the background (see CHECKPOINT_*)."""

    def __init__(self, engine: Engine, database: str) -> None:
        super().__init__(name="metering-checkpoint", daemon=True)
        self._engine = weakref.ref(engine)  # the thread ends when the engine is gone
        self._database = database
        self._lock = write_lock_for(engine)
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            connection = sqlite3.connect(self._database, timeout=30, isolation_level=None)
        except sqlite3.Error:
            log.exception("the WAL checkpointer could not open %s", self._database)
            return
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA synchronous=FULL")
            while not self._stopping.wait(CHECKPOINT_INTERVAL_SECONDS):
                if self._engine() is None:
                    return
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > CHECKPOINT_RESTART_FRAMES and self._lock is not None:
                with self._lock:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # the writers' autocheckpoint is the backstop
            log.warning("WAL checkpoint of %s failed", self._database, exc_info=True)


# One writer at a time per SQLite database: SQLite serializes writers anyway, and
# waiting on a lock is cheaper and fairer than its busy handler, which sleeps
# 1, 2, 5, 10 ... ms between retries (with `serve --workers N` a writer found
# the database busy most of the time and slept through the commit it waited for).
_sqlite_write_locks: weakref.WeakValueDictionary[str | int, WriterLock] = (
    weakref.WeakValueDictionary()
)
_locks_guard = threading.Lock()


class WriterLock:
    """The SQLite writers' lock: a thread lock for this process's threads and,
    for a database file, an exclusive ``flock`` on a file beside it for other
    processes. The kernel hands ``flock`` to the next waiter as soon as it is
    released, and waiting for it does not hold the GIL."""

    def __init__(self, lock_path: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if lock_path is not None:
            self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)

    def acquire(self) -> None:
        self._thread_lock.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def write_lock_for(engine: Engine) -> WriterLock | None:
    if engine.dialect.name != "sqlite":
        return None
    database = sqlite_file(engine.url)
    # Engines on one file share its lock (a second flock of the same file from this
    # process would wait for the first); an in-memory database is the engine's own.
    key: str | int = os.path.realpath(database) if database is not None else id(engine)
    with _locks_guard:
        lock = _sqlite_write_locks.get(key)
        if lock is None:
            lock = WriterLock(f"{key}-metering-write.lock" if database is not None else None)
            _sqlite_write_locks[key] = lock
        return lock
