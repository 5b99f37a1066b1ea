"""Per-caller rate limits through the real server: RESOURCE_EXHAUSTED (RATE_LIMITED) with
a RetryInfo, nothing written, success after the delay, other callers unaffected.

The server runs with METERING_AUTH=token so that each token is its own caller. Without
authentication the caller is the peer address: every loopback client shares one bucket
(tested in tests/unit/test_ratelimit.py), so this test cannot tell two local callers apart
there. The buckets are in memory, so one backend (SQLite) is enough.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import func, select

from metering.storage import schema
from metering.storage.engine import make_engine
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.conftest import TEST_PRICES
from tests.support.grpc_errors import details_of
from tests.support.server import ServerProcess

T = 10
_ROLES = ("admin", "reader-1", "reader-2", "reader-3", "relay")
_TABLES = (
    schema.idempotency_keys,
    schema.usage_records,
    schema.ledger_transactions,
    schema.ledger_entries,
    schema.reservations,
)
_BODY = (
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}'
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", *args], capture_output=True, text=True, timeout=120
    )


@dataclass
class Limited:
    server: ServerProcess
    url: str
    metering: pb_grpc.MeteringServiceStub
    admin: admin_grpc.MeteringAdminServiceStub
    tokens: dict[str, str]

    def auth(self, role: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[role]}"),)

    def row_counts(self) -> dict[str, int]:
        engine = make_engine(self.url, pool_size=1)
        try:
            with engine.connect() as connection:
                return {
                    table.name: int(
                        connection.execute(select(func.count()).select_from(table)).scalar_one()
                    )
                    for table in _TABLES
                }
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ratelimit') / 'metering.db'}"
    migrated = _cli("migrate", "--database-url", url)
    assert migrated.returncode == 0, migrated.stderr
    tokens = {}
    for name in _ROLES:
        created = _cli(
            "tokens", "create", "--role", name.split("-")[0], "--name", name, "--database-url", url
        )
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip()
    env = {
        "METERING_AUTH": "token",
        "METERING_RATE_LIMIT_SUMMARY_PER_SECOND": "1",
        "METERING_RATE_LIMIT_SUMMARY_BURST": "2",
        "METERING_RATE_LIMIT_ESTIMATE_PER_SECOND": "1",
        "METERING_RATE_LIMIT_ESTIMATE_BURST": "1",
    }
    server = ServerProcess(url, prices_file=TEST_PRICES, env=env).start()
    channel = grpc.insecure_channel(server.target)
    try:
        yield Limited(
            server,
            url,
            pb_grpc.MeteringServiceStub(channel),
            admin_grpc.MeteringAdminServiceStub(channel),
            tokens,
        )
    finally:
        channel.close()
        server.stop()


def _summary(days: int) -> pb.UsageSummaryRequest:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    end.GetCurrentTime()
    start.seconds = end.seconds - days * 86_400
    # Unscoped readers may summarize every account: no account needed.
    return pb.UsageSummaryRequest(start_time=start, end_time=end)


def _rate_limited(call: object, *args: object, **kwargs: object) -> float:
    """Assert the call is RESOURCE_EXHAUSTED / RATE_LIMITED; return its RetryInfo delay."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=T, **kwargs)  # type: ignore[operator]
    details = details_of(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    delays = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delays.append(retry.retry_delay.ToTimedelta().total_seconds())
    assert len(delays) == 1, status
    return delays[0]


def test_summary_over_the_rate_is_refused_then_allowed_after_the_delay(limited: Limited) -> None:
    one, other = limited.auth("reader-1"), limited.auth("reader-2")
    summary = limited.metering.UsageSummary
    summary(_summary(1), metadata=one, timeout=T)
    summary(_summary(1), metadata=one, timeout=T)
    delay = _rate_limited(summary, _summary(1), metadata=one)
    assert 0 < delay <= 1.0
    # Another caller has its own bucket.
    summary(_summary(1), metadata=other, timeout=T)
    summary(_summary(1), metadata=other, timeout=T)
    time.sleep(delay + 0.05)
    summary(_summary(1), metadata=one, timeout=T)
    assert any("rate limited" in line for line in limited.server.output)


def test_a_long_summary_costs_more(limited: Limited) -> None:
    reader = limited.auth("reader-3")
    # 62 days cost 2 tokens: the whole burst.
    limited.metering.UsageSummary(_summary(62), metadata=reader, timeout=T)
    delay = _rate_limited(limited.metering.UsageSummary, _summary(1), metadata=reader)
    assert 0 < delay <= 1.0
    # 390 days would cost 13, more than the burst: a full bucket lets it through.
    time.sleep(2.1)
    limited.metering.UsageSummary(_summary(390), metadata=reader, timeout=T)


def test_refused_authorizations_write_nothing(limited: Limited) -> None:
    admin, relay = limited.auth("admin"), limited.auth("relay")
    account = f"acct-{uuid.uuid4().hex[:12]}"
    limited.admin.CreateAccount(
        admin_pb.CreateAccountRequest(account_id=account), metadata=admin, timeout=T
    )
    grant = admin_pb.GrantCreditsRequest(account_id=account, request_id=uuid.uuid4().hex)
    grant.amount.CopyFrom(types_pb2.Money(currency_code="USD", units=10))
    limited.admin.GrantCredits(grant, metadata=admin, timeout=T)

    def hold(request_json: bytes = _BODY, **fields: object) -> pb.AuthorizeUsageRequest:
        return pb.AuthorizeUsageRequest(
            account_id=account,
            request_id=uuid.uuid4().hex,
            model="gpt-4o-mini",
            request_json=request_json,
            **fields,  # type: ignore[arg-type]
        )

    allowed = limited.metering.AuthorizeUsage(hold(), metadata=relay, timeout=T)
    assert allowed.decision == pb.AUTHORIZATION_DECISION_ALLOWED
    before = limited.row_counts()
    delay = _rate_limited(limited.metering.AuthorizeUsage, hold(), metadata=relay)
    assert 0 < delay <= 1.0
    # The same group: EstimateTokens waits too.
    _rate_limited(
        limited.metering.EstimateTokens,
        pb.EstimateTokensRequest(model="gpt-4o-mini", text="hello"),
        metadata=relay,
    )
    assert limited.row_counts() == before
    # A hold without a request body needs no tokenization: not limited.
    plain = hold(b"", input_tokens=10, max_output_tokens=10)
    assert limited.metering.AuthorizeUsage(plain, metadata=relay, timeout=T).decision == (
        pb.AUTHORIZATION_DECISION_ALLOWED
    )
    time.sleep(delay + 0.05)
    assert limited.metering.AuthorizeUsage(hold(), metadata=relay, timeout=T).decision == (
        pb.AUTHORIZATION_DECISION_ALLOWED
    )
