"""The storage adapter on both databases: schema, append-only ledger, price sync."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from metering.bootstrap import SystemClock
from metering.domain.errors import FailedPrecondition
from metering.service.prices import load_price_book, sync_catalogue
from metering.storage import migrate
from metering.storage.engine import make_engine
from metering.storage.schema import APPEND_ONLY_TABLES, metadata
from metering.storage.store import SqlDatabase
from tests.conftest import TEST_PRICES


def test_migrations_produce_exactly_the_declared_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrate.is_current(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_migrate_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("statement", ["UPDATE {t} SET account_id = 'x'", "DELETE FROM {t}"])
def test_ledger_tables_refuse_update_and_delete(
    database_url: str, table: str, statement: str
) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO ledger_transactions (account_id, transaction_id, kind, "
                    "request_id, reason, create_time_us) VALUES ('a', 't', 'GRANT', 'r', '', 1)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO ledger_entries (account_id, transaction_id, seq, ledger_account, "
                    "asset, amount) VALUES ('a', 't', 0, 'a', 'USD', 1)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO usage_records (account_id, record_id, request_id, event_time_us, "
                    "record_time_us, provider, model, api_key_id, service, streamed, usage_source, "
                    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
                    "cache_write_1h_tokens, reasoning_tokens, currency_code, cost_nanos, "
                    "request_credits, price_id, price_version, transaction_id, labels_json) VALUES "
                    "('a', 'rec', 'r', 1, 1, 'p', 'm', '', '', false, 'REPORTED', "
                    "0, 0, 0, 0, 0, 0, 'USD', 0, 0, 'p/m', 1, 't', '{}')"
                )
            )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement.format(t=table)))
    finally:
        engine.dispose()


def test_price_sync_is_idempotent_and_refuses_silent_changes(database_url: str) -> None:
    engine = make_engine(database_url)
    database = SqlDatabase(engine)
    catalogue = json.loads(Path(TEST_PRICES).read_text())
    try:
        inserted = sync_catalogue(database, catalogue, "test", SystemClock())
        assert inserted == len(catalogue["prices"])
        assert sync_catalogue(database, catalogue, "test", SystemClock()) == 0
        assert len(load_price_book(database)) == len(catalogue["prices"])
        catalogue["prices"][0]["input_per_million"] = "0.06"
        with pytest.raises(FailedPrecondition) as caught:
            sync_catalogue(database, catalogue, "test", SystemClock())
        assert caught.value.reason == "PRICE_VERSION_CHANGED"
        catalogue["prices"][0]["version"] = 2
        assert sync_catalogue(database, catalogue, "test", SystemClock()) == 1
    finally:
        engine.dispose()


def test_rollup_migration_backfills_existing_records(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"rollup_{uuid.uuid4().hex[:8]}"
        server.create_database(name)
        url = server.url(name)
    engine = make_engine(url)
    config = migrate._config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    insert_record = text(
        "INSERT INTO usage_records (account_id, record_id, request_id, event_time_us, "
        "record_time_us, provider, model, api_key_id, service, streamed, usage_source, "
        "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "cache_write_1h_tokens, reasoning_tokens, currency_code, cost_nanos, request_credits, "
        "price_id, price_version, transaction_id, labels_json, unpriced) VALUES "
        "('a', :id, :id, :time, 1, 'p', 'm', '', '', false, 'REPORTED', :tokens, 0, 0, 0, 0, 0, "
        "'USD', :cost, 0, 'p/m', 1, 't', '{}', :unpriced)"
    )
    rows = [
        {"id": "r1", "time": 0, "tokens": 5, "cost": 7, "unpriced": False},
        {"id": "r2", "time": 899_999_999, "tokens": 6, "cost": 8, "unpriced": True},
        {"id": "r3", "time": 900_000_000, "tokens": 1, "cost": 1, "unpriced": False},
    ]
    with engine.begin() as connection:
        for row in rows:
            connection.execute(insert_record, row)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        got = connection.execute(
            text(
                "SELECT slice, request_count, unpriced_request_count, input_tokens, cost_nanos "
                "FROM usage_rollups ORDER BY slice"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in got] == [(0, 2, 1, 11, 15), (1, 1, 0, 1, 1)]
