"""Shared fixtures: every storage test runs on SQLite and on a throwaway PostgreSQL.

PostgreSQL comes from the machine's binaries (tests/support/postgres.py). Where
they are missing the PostgreSQL cases skip with a loud reason, unless
METERING_REQUIRE_POSTGRES=1 (as in CI), where a missing PostgreSQL fails.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from metering.storage import migrate
from metering.storage.engine import make_engine
from tests.support.postgres import PostgresServer, find_pg_bindir

BACKENDS = ("sqlite", "postgresql")
TEST_PRICES = Path(__file__).parent / "data" / "prices.json"
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if find_pg_bindir() is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: PostgreSQL tests NOT RUN"
        if os.environ.get("METERING_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " but METERING_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    server = PostgresServer()
    server.start()
    # One migrated template; each test copies it (CREATE DATABASE ... TEMPLATE is fast).
    server.create_database("metering_template")
    engine = make_engine(server.url("metering_template"))
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated, empty database on the test's backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'metering.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    server.create_database(name, template="metering_template")
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
