"""Tokens, the role table, the token cache, tenant checks and the security settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from metering.api.auth import RULES, authorize, bearer_token
from metering.config import ConfigError, is_loopback, load_security_settings
from metering.domain.auth import (
    Caller,
    Role,
    TokenInfo,
    new_token,
    token_id_of,
    token_matches,
    token_sha256,
)
from metering.domain.errors import NotFound, PermissionDenied, Unauthenticated
from metering.service.auth import AccountTenants, Authenticator, TokenAdmin
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb

_ANY = "0.0.0.0"  # noqa: S104 - the address under test
_MS = "/metering.v1.MeteringService/"
_AS = "/metering.v1.MeteringAdminService/"


class FakeTokenStore:
    def __init__(self) -> None:
        self.tokens: dict[str, TokenInfo] = {}
        self.revision = 1
        self.tenants: dict[str, str | None] = {}
        self.reads = 0

    def insert_api_token(self, token: TokenInfo) -> None:
        self.tokens[token.token_id] = token

    def api_tokens(self, *, include_revoked: bool) -> list[TokenInfo]:
        return [t for t in self.tokens.values() if include_revoked or t.revoke_time_us is None]

    def revoke_api_token(self, token_id: str, now_us: int) -> bool:
        token = self.tokens.get(token_id)
        if token is None:
            return False
        if token.revoke_time_us is None:
            self.tokens[token_id] = TokenInfo(**{**token.__dict__, "revoke_time_us": now_us})
        return True

    def account_tenants(self, account_ids: list[str]) -> dict[str, str | None]:
        self.reads += 1
        return {a: self.tenants[a] for a in account_ids if a in self.tenants}

    def get_revision(self, name: str) -> int:
        assert name == "tokens"
        return self.revision

    def bump_revision(self, name: str) -> None:
        self.revision += 1


class FakeDatabase:
    def __init__(self) -> None:
        self.store = FakeTokenStore()

    @contextmanager
    def write(self) -> Iterator[FakeTokenStore]:
        yield self.store

    @contextmanager
    def read(self) -> Iterator[FakeTokenStore]:
        yield self.store


class FixedClock:
    def now_us(self) -> int:
        return 1_800_000_000_000_000


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_random_parseable_and_hashed() -> None:
    token_id, token = new_token()
    other_id, other = new_token()
    assert token_id != other_id and token != other
    assert token_id_of(token) == token_id
    assert len(token_sha256(token)) == 64
    assert token_matches(token, token_sha256(token))
    assert not token_matches(other, token_sha256(token))
    for junk in ("", "mt_", "Bearer x", token + "x", token[:-1], f"mt_{token_id}"):
        assert token_id_of(junk) is None


def test_bearer_token_from_metadata() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("x-other", "1"), ("authorization", "bearer  abc ")]) == "abc"
    with pytest.raises(Unauthenticated) as missing:
        bearer_token([("x-other", "1")])
    assert missing.value.reason == "TOKEN_MISSING"
    for bad in (
        [("authorization", "Basic abc")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
    ):
        with pytest.raises(Unauthenticated) as invalid:
            bearer_token(bad)
        assert invalid.value.reason == "TOKEN_INVALID"


def _denied(caller: Caller, method: str, request: object) -> str:
    with pytest.raises(PermissionDenied) as caught:
        authorize(caller, method, request)
    return caught.value.reason


def test_the_role_table() -> None:
    relay, reader = Caller("r", Role.RELAY), Caller("d", Role.READER)
    admin = Caller("a", Role.ADMIN)
    record = pb.RecordUsageRequest(account_id="acct")
    assert authorize(relay, _MS + "RecordUsage", record) == []  # unscoped: nothing to check
    assert _denied(reader, _MS + "RecordUsage", record) == "ROLE_NOT_ALLOWED"
    summary = pb.UsageSummaryRequest(account_id="acct")
    assert authorize(reader, _MS + "UsageSummary", summary) == []
    assert _denied(relay, _MS + "UsageSummary", summary) == "ROLE_NOT_ALLOWED"
    for method in ("AuthorizeUsage", "ReleaseReservation", "EstimateTokens"):
        assert Role.RELAY in RULES[_MS + method].roles
    # A method nobody listed (a new RPC) is for admins only.
    for caller in (relay, reader):
        assert _denied(caller, _MS + "SomethingNew", object()) == "ROLE_NOT_ALLOWED"
        assert _denied(caller, _AS + "AddPrice", object()) == "ROLE_NOT_ALLOWED"
    assert authorize(admin, _MS + "SomethingNew", object()) == []


def test_tenant_scoped_callers() -> None:
    relay = Caller("r", Role.RELAY, "t1")
    admin = Caller("a", Role.ADMIN, "t1")
    record = pb.RecordUsageRequest(account_id="acct")
    assert authorize(relay, _MS + "RecordUsage", record) == ["acct"]
    batch = pb.RecordUsageBatchRequest(
        records=[record, pb.RecordUsageRequest(account_id="b"), pb.RecordUsageRequest()]
    )
    assert authorize(relay, _MS + "RecordUsageBatch", batch) == ["acct", "b"]
    assert authorize(relay, _MS + "EstimateTokens", pb.EstimateTokensRequest()) == []
    reader = Caller("d", Role.READER, "t1")
    everything = pb.UsageSummaryRequest()
    assert _denied(reader, _MS + "UsageSummary", everything) == "TENANT_MISMATCH"
    # Global methods (prices, anything unlisted) are not for scoped tokens.
    assert _denied(admin, _AS + "ListPrices", admin_pb.ListPricesRequest()) == "ROLE_NOT_ALLOWED"
    assert _denied(admin, _MS + "SomethingNew", object()) == "ROLE_NOT_ALLOWED"
    create = admin_pb.CreateAccountRequest(account_id="n", tenant_id="t2")
    assert _denied(admin, _AS + "CreateAccount", create) == "TENANT_MISMATCH"
    create.tenant_id = "t1"
    assert authorize(admin, _AS + "CreateAccount", create) == []
    update = admin_pb.UpdateAccountRequest(account=admin_pb.Account(account_id="acct"))
    assert authorize(admin, _AS + "UpdateAccount", update) == ["acct"]


def test_token_admin_and_authenticator() -> None:
    db = FakeDatabase()
    clock = FakeMonotonic()
    admin = TokenAdmin(db, FixedClock())
    auth = Authenticator(db, check_seconds=0.5, monotonic=clock)
    info, token = admin.create(Role.RELAY, "t1", "relay one")
    assert token not in repr(info) and info.token_sha256 == token_sha256(token)
    assert auth.stale
    auth.refresh()
    assert not auth.stale
    assert auth.authenticate(token) == Caller(info.token_id, Role.RELAY, "t1")
    with pytest.raises(Unauthenticated):
        auth.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    admin.revoke(info.token_id)
    admin.revoke(info.token_id)  # twice is fine
    assert auth.authenticate(token).token_id == info.token_id  # cached until the next check
    clock.now += 0.5
    assert auth.stale
    auth.refresh()
    with pytest.raises(Unauthenticated) as revoked:
        auth.authenticate(token)
    assert revoked.value.reason == "TOKEN_INVALID"
    with pytest.raises(NotFound):
        admin.revoke("000000000000")
    assert [t.token_id for t in admin.list()] == [info.token_id]


def test_token_admin_validates() -> None:
    admin = TokenAdmin(FakeDatabase(), FixedClock())
    with pytest.raises(Exception, match="tenant"):
        admin.create(Role.ADMIN, "bad tenant", "")
    with pytest.raises(Exception, match="name"):
        admin.create(Role.ADMIN, None, "x" * 200)


def test_account_tenants() -> None:
    db = FakeDatabase()
    db.store.tenants = {"a": "t1", "b": "t2", "c": None}
    tenants = AccountTenants(db, size=2)
    tenants.check("t1", ["a"])
    assert tenants.check_cached("t1", ["a"]) is True
    reads = db.store.reads
    tenants.check("t1", ["a"])
    assert db.store.reads == reads  # cached
    for accounts in (["b"], ["c"], ["missing"], ["a", "b"]):
        with pytest.raises(PermissionDenied) as caught:
            tenants.check("t1", accounts)
        assert caught.value.reason == "TENANT_MISMATCH"
    assert tenants.check_cached("t1", ["x"]) is None


def test_loopback() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback(host)
    for host in (_ANY, "::", "10.0.0.1", "metering.internal"):
        assert not is_loopback(host)


def test_security_settings(tmp_path: Path) -> None:
    assert load_security_settings({}, "127.0.0.1").auth == "none"
    assert load_security_settings({}, _ANY).auth == "token"
    assert load_security_settings({"METERING_AUTH": "token"}, "::1").auth == "token"
    with pytest.raises(ConfigError, match="refusing"):
        load_security_settings({"METERING_AUTH": "none"}, _ANY)
    allowed = load_security_settings(
        {"METERING_AUTH": "none", "METERING_ALLOW_UNAUTHENTICATED": "1"}, _ANY
    )
    assert allowed.auth == "none" and allowed.allow_unauthenticated
    with pytest.raises(ConfigError, match="METERING_AUTH"):
        load_security_settings({"METERING_AUTH": "basic"}, "127.0.0.1")
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        load_security_settings({"METERING_TLS_CERT_FILE": str(cert)}, "127.0.0.1")
    with pytest.raises(ConfigError, match="no such file"):
        load_security_settings({"METERING_TLS_KEY_FILE": str(tmp_path / "nope")}, "127.0.0.1")
    tls = load_security_settings(
        {"METERING_TLS_CERT_FILE": str(cert), "METERING_TLS_KEY_FILE": str(cert)}, "127.0.0.1"
    )
    assert tls.tls and tls.tls_client_ca_file is None
