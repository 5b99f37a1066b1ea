"""End-to-end fixtures: the real server process per backend, real gRPC over loopback."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from sqlalchemy import func, select

from metering.storage import schema
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.conftest import BACKENDS, TEST_PRICES
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess

_numbers = itertools.count()


@dataclass
class Live:
    """A running server, stubs to call it, and a direct view of its database."""

    server: ServerProcess
    backend: str
    database_url: str
    channel: grpc.Channel
    metering: pb_grpc.MeteringServiceStub
    admin: admin_grpc.MeteringAdminServiceStub
    database: SqlDatabase

    def new_account(
        self,
        *,
        units: int = 0,
        currency_code: str = "USD",
        billing_mode: int = types_pb2.BILLING_MODE_TOKEN,
        allow_negative_balance: bool = False,
        request_credits: int = 0,
    ) -> str:
        account_id = f"acct-{uuid.uuid4().hex[:12]}"
        self.admin.CreateAccount(
            admin_pb.CreateAccountRequest(
                account_id=account_id,
                currency_code=currency_code,
                billing_mode=billing_mode,  # type: ignore[arg-type]
                allow_negative_balance=allow_negative_balance,
            ),
            timeout=10,
        )
        if units or request_credits:
            grant = admin_pb.GrantCreditsRequest(
                account_id=account_id,
                request_id=f"grant-{uuid.uuid4().hex}",
                request_credits=request_credits,
            )
            if units:
                grant.amount.CopyFrom(types_pb2.Money(currency_code=currency_code, units=units))
            self.admin.GrantCredits(grant, timeout=10)
        return account_id

    def row_counts(self) -> dict[str, int]:
        """How many rows each table holds: 'nothing written' means these did not change."""
        tables = (
            schema.accounts,
            schema.idempotency_keys,
            schema.usage_records,
            schema.ledger_transactions,
            schema.ledger_entries,
        )
        with self.database.engine.connect() as connection:
            return {
                table.name: int(
                    connection.execute(select(func.count()).select_from(table)).scalar_one()
                )
                for table in tables
            }

    def verify_ledger(self) -> list[str]:
        with self.database.read() as store:
            return store.verify_ledger().problems


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    backend = str(request.param)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'metering.db'}"
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"e2e_{os.getpid()}_{next(_numbers)}"
        pg.create_database(name)
        url = pg.url(name)
        # PostgreSQL is migrated explicitly, as an operator would.
        migrated = _cli("migrate", "--database-url", url)
        assert migrated.returncode == 0, migrated.stderr
    server = ServerProcess(url, prices_file=TEST_PRICES).start()
    channel = grpc.insecure_channel(server.target)
    engine = make_engine(url, pool_size=2)
    live = Live(
        server=server,
        backend=backend,
        database_url=url,
        channel=channel,
        metering=pb_grpc.MeteringServiceStub(channel),
        admin=admin_grpc.MeteringAdminServiceStub(channel),
        database=SqlDatabase(engine),
    )
    try:
        yield live
    finally:
        channel.close()
        server.stop()
        # The operator's check, as a real command, after the module's scenarios.
        verified = _cli("ledger", "verify", "--database-url", url)
        engine.dispose()
        print(f"\n[{backend}] metering ledger verify:\n{verified.stdout}{verified.stderr}")
        assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
def verified(live: Live) -> Iterator[Live]:
    """The live server; after the test, the ledger must verify clean."""
    yield live
    assert live.verify_ledger() == []
