"""Engine construction for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def make_engine(database_url: str, pool_size: int = 8) -> Engine:
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
        _configure_sqlite(engine)
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


def _configure_sqlite(engine: Engine) -> None:
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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("metering_readonly"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


# One writer at a time per SQLite engine: SQLite serializes writers anyway,
# and waiting on a lock is cheaper and fairer than its busy-retry loop.
_sqlite_write_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_lock_for(engine: Engine) -> threading.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    with _locks_guard:
        return _sqlite_write_locks.setdefault(id(engine), threading.Lock())
