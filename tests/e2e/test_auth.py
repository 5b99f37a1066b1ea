"""Authentication and authorization through the real server (METERING_AUTH=token),
on SQLite and PostgreSQL; the start-up rule for non-loopback addresses; TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from metering.storage import schema
from metering.storage.engine import make_engine
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import prices_pb2, types_pb2
from tests.conftest import BACKENDS, TEST_PRICES
from tests.support.grpc_errors import details_of
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess

_TABLES = (
    schema.accounts,
    schema.idempotency_keys,
    schema.usage_records,
    schema.ledger_transactions,
    schema.ledger_entries,
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", *args], capture_output=True, text=True, timeout=120
    )


def _create_token(url: str, role: str, tenant: str | None = None) -> str:
    args = ["tokens", "create", "--role", role, "--database-url", url, "--name", f"test {role}"]
    if tenant is not None:
        args += ["--tenant", tenant]
    created = _cli(*args)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("mt_") and "\n" not in token
    return token


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Secured:
    server: ServerProcess
    url: str
    channel: grpc.Channel
    metering: pb_grpc.MeteringServiceStub
    admin: admin_grpc.MeteringAdminServiceStub
    tokens: dict[str, str]

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

    def account(self, tenant: str | None, units: int = 100) -> str:
        account_id = f"acct-{uuid.uuid4().hex[:12]}"
        self.admin.CreateAccount(
            admin_pb.CreateAccountRequest(account_id=account_id, tenant_id=tenant or ""),
            metadata=_auth(self.tokens["admin"]),
            timeout=10,
        )
        grant = admin_pb.GrantCreditsRequest(
            account_id=account_id, request_id=f"grant-{uuid.uuid4().hex}"
        )
        grant.amount.CopyFrom(types_pb2.Money(currency_code="USD", units=units))
        self.admin.GrantCredits(grant, metadata=_auth(self.tokens["admin"]), timeout=10)
        return account_id


@pytest.fixture(scope="module", params=BACKENDS)
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    backend = str(request.param)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'metering.db'}"
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"auth_{os.getpid()}"
        pg.create_database(name)
        url = pg.url(name)
        migrated = _cli("migrate", "--database-url", url)
        assert migrated.returncode == 0, migrated.stderr
    tokens = {
        "admin": _create_token(url, "admin"),
        "admin-a": _create_token(url, "admin", "tenant-a"),
        "relay-a": _create_token(url, "relay", "tenant-a"),
        "reader-a": _create_token(url, "reader", "tenant-a"),
        "relay": _create_token(url, "relay"),
    }
    server = ServerProcess(url, prices_file=TEST_PRICES, env={"METERING_AUTH": "token"}).start()
    channel = grpc.insecure_channel(server.target)
    try:
        yield Secured(
            server,
            url,
            channel,
            pb_grpc.MeteringServiceStub(channel),
            admin_grpc.MeteringAdminServiceStub(channel),
            tokens,
        )
    finally:
        channel.close()
        server.stop()
        assert not any(token in line for line in server.output for token in tokens.values()), (
            "a token was logged"
        )


def _record(account_id: str, request_id: str | None = None) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id or uuid.uuid4().hex,
        model="gpt-4o-mini",
        usage=types_pb2.TokenUsage(input_tokens=1000, output_tokens=500),
    )


def _around_now() -> tuple[timestamp_pb2.Timestamp, timestamp_pb2.Timestamp]:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.GetCurrentTime()
    start.seconds -= 86_400
    end.GetCurrentTime()
    end.seconds += 86_400
    return start, end


def _refused(call: object, *args: object, **kwargs: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10, **kwargs)  # type: ignore[operator]
    details = details_of(caught.value)
    return details.code, details.reason


def test_health_and_reflection_stay_open(secured: Secured) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_calls_without_a_valid_token_are_unauthenticated(secured: Secured) -> None:
    before = secured.row_counts()
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    assert _refused(secured.metering.RecordUsage, _record("anything")) == (
        unauthenticated,
        "TOKEN_MISSING",
    )
    create = admin_pb.CreateAccountRequest(account_id="nobody")
    assert _refused(secured.admin.CreateAccount, create) == (unauthenticated, "TOKEN_MISSING")
    forged = "mt_0123456789ab_" + "A" * 43
    for metadata in (
        _auth(forged),
        _auth("not-a-token"),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        _auth(secured.tokens["admin"][:-1] + "x"),  # right id, wrong secret
    ):
        got = _refused(secured.admin.CreateAccount, create, metadata=metadata)
        assert got == (unauthenticated, "TOKEN_INVALID")
    assert secured.row_counts() == before


def test_a_role_calls_only_its_methods(secured: Secured) -> None:
    account = secured.account("tenant-a")
    before = secured.row_counts()
    denied = (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    reader, relay = _auth(secured.tokens["reader-a"]), _auth(secured.tokens["relay-a"])
    assert _refused(secured.metering.RecordUsage, _record(account), metadata=reader) == denied
    summary = pb.UsageSummaryRequest(account_id=account)
    assert _refused(secured.metering.UsageSummary, summary, metadata=relay) == denied
    grant = admin_pb.GrantCreditsRequest(account_id=account, request_id="r", request_credits=5)
    assert _refused(secured.admin.GrantCredits, grant, metadata=relay) == denied
    assert _refused(secured.admin.GrantCredits, grant, metadata=reader) == denied
    # Prices are global: not for a tenant-scoped admin, nor for relays.
    scoped_admin = _auth(secured.tokens["admin-a"])
    add = admin_pb.AddPriceRequest(price=prices_pb2.PriceEntry(price_id="x/y", model="y"))
    assert _refused(secured.admin.AddPrice, add, metadata=scoped_admin) == denied
    listing = admin_pb.ListPricesRequest()
    assert _refused(secured.admin.ListPrices, listing, metadata=scoped_admin) == denied
    assert _refused(secured.admin.ListPrices, listing, metadata=relay) == denied
    assert secured.row_counts() == before
    # The reader may read; the unscoped admin may do everything.
    secured.metering.GetBalance(
        pb.GetBalanceRequest(account_id=account), metadata=reader, timeout=10
    )
    secured.admin.ListPrices(listing, metadata=_auth(secured.tokens["admin"]), timeout=10)


def test_the_streaming_export_is_for_unscoped_admins_only(secured: Secured) -> None:
    account = secured.account(None)
    start, end = _around_now()
    export = admin_pb.ExportUsageRequest(account_id=account, start_time=start, end_time=end)

    def streamed(metadata: tuple[tuple[str, str], ...] | None, timeout: float = 10) -> list[object]:
        return list(secured.admin.ExportUsage(export, metadata=metadata, timeout=timeout))

    assert _refused(streamed, None) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    denied = (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    for token in ("relay", "reader-a", "admin-a"):
        assert _refused(streamed, _auth(secured.tokens[token])) == denied
    review = admin_pb.ListReviewRecordsRequest(start_time=start, end_time=end)
    assert (
        _refused(secured.admin.ListReviewRecords, review, metadata=_auth(secured.tokens["admin-a"]))
        == denied
    )
    messages = streamed(_auth(secured.tokens["admin"]))
    assert len(messages) == 1 and messages[0].totals.row_count == 0  # type: ignore[attr-defined]


def test_a_relay_records_for_its_tenants_account(secured: Secured) -> None:
    account = secured.account("tenant-a")
    relay = _auth(secured.tokens["relay-a"])
    before = secured.row_counts()
    response = secured.metering.RecordUsage(_record(account, "r-1"), metadata=relay, timeout=10)
    assert response.cost.nanos == 450_000  # 1000 x $0.15/M + 500 x $0.60/M
    after = secured.row_counts()
    assert after["usage_records"] == before["usage_records"] + 1
    balance = secured.metering.GetBalance(
        pb.GetBalanceRequest(account_id=account), metadata=relay, timeout=10
    )
    assert balance.balance.units == 99
    estimate = secured.metering.EstimateTokens(
        pb.EstimateTokensRequest(model="gpt-4o-mini", text="hello", account_id=account),
        metadata=relay,
        timeout=10,
    )
    assert estimate.input_tokens > 0
    start, end = _around_now()
    summary = secured.metering.UsageSummary(
        pb.UsageSummaryRequest(account_id=account, start_time=start, end_time=end),
        metadata=_auth(secured.tokens["reader-a"]),
        timeout=10,
    )
    assert summary.totals.request_count == 1
    # An unscoped relay records for any account.
    secured.metering.RecordUsage(
        _record(account, "r-2"), metadata=_auth(secured.tokens["relay"]), timeout=10
    )
    # The relay corrects its own tenant's call; a reader may not.
    correction = pb.CorrectUsageRequest(
        account_id=account, request_id="r-1", usage=types_pb2.TokenUsage(input_tokens=2000)
    )
    corrected = secured.metering.CorrectUsage(correction, metadata=relay, timeout=10)
    assert corrected.cost_difference.nanos == 2000 * 150 - 450_000
    reader = _auth(secured.tokens["reader-a"])
    assert _refused(secured.metering.CorrectUsage, correction, metadata=reader) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_NOT_ALLOWED",
    )


def test_cross_tenant_calls_are_refused_and_write_nothing(secured: Secured) -> None:
    own = secured.account("tenant-a")
    other = secured.account("tenant-b")
    untenanted = secured.account(None)
    relay, reader = _auth(secured.tokens["relay-a"]), _auth(secured.tokens["reader-a"])
    scoped_admin = _auth(secured.tokens["admin-a"])
    mismatch = (grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH")
    before = secured.row_counts()
    for account in (other, untenanted, "no-such-account"):
        assert _refused(secured.metering.RecordUsage, _record(account), metadata=relay) == mismatch
        correction = pb.CorrectUsageRequest(
            account_id=account, request_id="r-1", usage=types_pb2.TokenUsage(input_tokens=1)
        )
        assert _refused(secured.metering.CorrectUsage, correction, metadata=relay) == mismatch
        balance = pb.GetBalanceRequest(account_id=account)
        assert _refused(secured.metering.GetBalance, balance, metadata=reader) == mismatch
        grant = admin_pb.GrantCreditsRequest(
            account_id=account, request_id=uuid.uuid4().hex, request_credits=5
        )
        assert _refused(secured.admin.GrantCredits, grant, metadata=scoped_admin) == mismatch
        update = admin_pb.UpdateAccountRequest(
            account=admin_pb.Account(account_id=account, price_adjustment_bps=100)
        )
        update.update_mask.paths.append("price_adjustment_bps")
        assert _refused(secured.admin.UpdateAccount, update, metadata=scoped_admin) == mismatch
    # A batch with one foreign record is refused whole.
    batch = pb.RecordUsageBatchRequest(records=[_record(own), _record(other)])
    assert _refused(secured.metering.RecordUsageBatch, batch, metadata=relay) == mismatch
    # All accounts at once: not for a tenant-scoped token.
    everything = pb.UsageSummaryRequest()
    assert _refused(secured.metering.UsageSummary, everything, metadata=reader) == mismatch
    assert secured.row_counts() == before
    # The same batch of its own records goes through.
    ok = secured.metering.RecordUsageBatch(
        pb.RecordUsageBatchRequest(records=[_record(own), _record(own)]),
        metadata=relay,
        timeout=10,
    )
    assert all(result.HasField("response") for result in ok.results)


def test_a_scoped_admin_creates_accounts_in_its_tenant_only(secured: Secured) -> None:
    scoped_admin = _auth(secured.tokens["admin-a"])
    account_id = f"acct-{uuid.uuid4().hex[:12]}"
    before = secured.row_counts()
    elsewhere = admin_pb.CreateAccountRequest(account_id=account_id, tenant_id="tenant-b")
    assert _refused(secured.admin.CreateAccount, elsewhere, metadata=scoped_admin) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "TENANT_MISMATCH",
    )
    assert secured.row_counts() == before
    created = secured.admin.CreateAccount(
        admin_pb.CreateAccountRequest(account_id=account_id), metadata=scoped_admin, timeout=10
    )
    assert created.account.tenant_id == "tenant-a"
    grant = admin_pb.GrantCreditsRequest(account_id=account_id, request_id="g", request_credits=1)
    secured.admin.GrantCredits(grant, metadata=scoped_admin, timeout=10)
    secured.metering.RecordUsage(
        _record(account_id), metadata=_auth(secured.tokens["relay-a"]), timeout=10
    )


def test_a_revoked_token_is_refused_within_a_second(secured: Secured) -> None:
    account = secured.account("tenant-a")
    token = _create_token(secured.url, "relay", "tenant-a")
    token_id = token.split("_")[1]
    request = pb.GetBalanceRequest(account_id=account)
    deadline = time.monotonic() + 5
    while True:  # a new token works within a second too
        try:
            secured.metering.GetBalance(request, metadata=_auth(token), timeout=10)
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    listed = _cli("tokens", "list", "--database-url", secured.url)
    assert token_id in listed.stdout and token not in listed.stdout
    revoked = _cli("tokens", "revoke", token_id, "--database-url", secured.url)
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = time.monotonic()
    while True:
        try:
            secured.metering.GetBalance(request, metadata=_auth(token), timeout=10)
        except grpc.RpcError as exc:
            assert details_of(exc).reason == "TOKEN_INVALID"
            break
        time.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0
    listed = _cli("tokens", "list", "--database-url", secured.url)
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert line.split("\t")[4] != "-"
    unknown = _cli("tokens", "revoke", "000000000000", "--database-url", secured.url)
    assert unknown.returncode == 2 and "no token" in unknown.stderr


# Start-up rule ----------------------------------------------------------------


def test_non_loopback_without_auth_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "METERING_AUTH": "none"}
    env.pop("METERING_ALLOW_UNAUTHENTICATED", None)
    refused = subprocess.run(
        [
            *(sys.executable, "-m", "metering", "serve", "--listen", "0.0.0.0:0"),
            *("--database-url", f"sqlite:///{tmp_path / 'm.db'}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metering: refusing to serve"), refused.stderr
    assert not (tmp_path / "m.db").exists()


def test_non_loopback_starts_unauthenticated_with_the_override(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}",
        prices_file=TEST_PRICES,
        listen="0.0.0.0:0",
        env={"METERING_AUTH": "none", "METERING_ALLOW_UNAUTHENTICATED": "1"},
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
                admin_pb.CreateAccountRequest(account_id="open"), timeout=10
            )
        assert any("WITHOUT AUTHENTICATION" in line for line in server.output)
    finally:
        assert server.stop() == 0


def test_non_loopback_defaults_to_token_auth(tmp_path: Path) -> None:
    env = {"METERING_AUTH": "", "METERING_ALLOW_UNAUTHENTICATED": ""}
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}", prices_file=TEST_PRICES, listen="0.0.0.0:0", env=env
    ).start()
    try:
        with (
            grpc.insecure_channel(server.target) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
                admin_pb.CreateAccountRequest(account_id="open"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert server.stop() == 0


# TLS ------------------------------------------------------------------------------


def _self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _tls_health(target: str, root: bytes) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    with grpc.secure_channel(target, credentials) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)


def test_tls_serves_the_certificate_and_follows_its_replacement(tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    first_cert, first_key = _self_signed("first")
    cert_file.write_bytes(first_cert)
    key_file.write_bytes(first_key)
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}",
        prices_file=TEST_PRICES,
        env={
            "METERING_TLS_CERT_FILE": str(cert_file),
            "METERING_TLS_KEY_FILE": str(key_file),
        },
    ).start()
    try:
        _tls_health(server.target, first_cert)
        # Plaintext is not served.
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        second_cert, second_key = _self_signed("second")
        # A renewal writes new files (the key first); the next connection gets the new one.
        key_file.write_bytes(second_key)
        cert_file.write_bytes(second_cert)
        _tls_health(server.target, second_cert)
        with pytest.raises(grpc.RpcError) as caught:
            _tls_health(server.target, first_cert)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert server.stop() == 0


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    server_cert, server_key = _self_signed("server")
    client_cert, client_key = _self_signed("client")
    files = {
        "server.crt": server_cert,
        "server.key": server_key,
        "clients.crt": client_cert,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}",
        prices_file=TEST_PRICES,
        env={
            "METERING_TLS_CERT_FILE": str(tmp_path / "server.crt"),
            "METERING_TLS_KEY_FILE": str(tmp_path / "server.key"),
            "METERING_TLS_CLIENT_CA_FILE": str(tmp_path / "clients.crt"),
        },
    ).start()
    try:
        with pytest.raises(grpc.RpcError):
            _tls_health(server.target, server_cert)  # no client certificate
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server_cert, private_key=client_key, certificate_chain=client_cert
        )
        with grpc.secure_channel(server.target, credentials) as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    finally:
        assert server.stop() == 0
