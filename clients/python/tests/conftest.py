"""Fixtures: a real `metering serve` subprocess shared by the session, or one per test."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import MeteringServer, free_port

from metering_client import MeteringClient


@pytest.fixture(scope="session")
def server() -> Iterator[MeteringServer]:
    """A server shared by the session (every test uses its own accounts)."""
    with tempfile.TemporaryDirectory(prefix="metering-client-") as tmp:
        srv = MeteringServer(Path(tmp))
        srv.start()
        yield srv
        srv.close()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[MeteringServer]:
    """A server of one's own on a fixed free port (for kill/restart tests)."""
    srv = MeteringServer(tmp_path, port=free_port())
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(scope="session")
def client(server: MeteringServer) -> Iterator[MeteringClient]:
    with MeteringClient(server.address) as c:
        yield c


@pytest.fixture
def account(client: MeteringClient) -> str:
    """A new prepaid account with 10 USD."""
    account_id = "py-" + uuid.uuid4().hex[:12]
    client.create_account(account_id=account_id)
    client.grant_credits(
        account_id=account_id,
        request_id="topup",
        amount={"currency_code": "USD", "units": 10},
    )
    return account_id
