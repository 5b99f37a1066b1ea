"""API tokens and tenants: creating and revoking tokens, authenticating callers,
and checking that a tenant-scoped caller touches only its tenant's accounts.

Tokens are cached in memory: at most once per ``check_seconds`` one cheap query
compares the database's ``tokens`` revision (bumped by every create and revoke,
in any process) with the cached one, so a revocation takes effect everywhere
within that interval. An account's tenant is fixed at creation, so it is
cached for good once seen.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Protocol

from metering.domain.auth import (
    NAME_LENGTH_MAX,
    Caller,
    Role,
    TokenInfo,
    is_tenant_id,
    new_token,
    token_id_of,
    token_matches,
    token_sha256,
)
from metering.domain.errors import (
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Violations,
)
from metering.service.ports import Clock

_REVISION = "tokens"
TENANT_CACHE_SIZE = 100_000


class TokenStore(Protocol):
    def insert_api_token(self, token: TokenInfo) -> None: ...
    def api_tokens(self, *, include_revoked: bool) -> list[TokenInfo]: ...
    def revoke_api_token(self, token_id: str, now_us: int) -> bool: ...
    def account_tenants(self, account_ids: list[str]) -> dict[str, str | None]: ...
    def get_revision(self, name: str) -> int: ...
    def bump_revision(self, name: str) -> None: ...


class TokenDatabase(Protocol):
    def write(self) -> AbstractContextManager[TokenStore]: ...
    def read(self) -> AbstractContextManager[TokenStore]: ...


class TokenAdmin:
    """Token management (the `metering tokens` commands)."""

    def __init__(self, db: TokenDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, role: Role, tenant_id: str | None, name: str = "") -> tuple[TokenInfo, str]:
        """A new token; returns its stored form and the token, which is never shown again."""
        v = Violations()
        if tenant_id is not None and not is_tenant_id(tenant_id):
            v.add("tenant", "a tenant id is 1-128 characters of [A-Za-z0-9._:@/-]")
        if len(name) > NAME_LENGTH_MAX or any(not " " <= c <= "~" for c in name):
            v.add("name", f"a name is at most {NAME_LENGTH_MAX} printable ASCII characters")
        v.raise_if_any()
        token_id, token = new_token()
        info = TokenInfo(
            token_id=token_id,
            name=name,
            role=role,
            tenant_id=tenant_id,
            token_sha256=token_sha256(token),
            create_time_us=self._clock.now_us(),
        )
        with self._db.write() as store:
            store.insert_api_token(info)
            store.bump_revision(_REVISION)
        return info, token

    def list(self) -> list[TokenInfo]:
        with self._db.read() as store:
            return store.api_tokens(include_revoked=True)

    def revoke(self, token_id: str) -> None:
        """Revoke a token; NOT_FOUND if there is none with that id. Revoking twice is fine."""
        with self._db.write() as store:
            if not store.revoke_api_token(token_id, self._clock.now_us()):
                raise NotFound("TOKEN_NOT_FOUND", f"no token {token_id!r}")
            store.bump_revision(_REVISION)


class Authenticator:
    """Active tokens in memory, checked against the database's revision."""

    def __init__(
        self,
        db: TokenDatabase,
        check_seconds: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenInfo] = {}
        self._revision = -1
        self._checked = float("-inf")

    @property
    def stale(self) -> bool:
        """Whether :meth:`authenticate` should be preceded by :meth:`refresh` (blocking)."""
        return self._monotonic() - self._checked >= self._check_seconds

    @property
    def token_count(self) -> int:
        return len(self._tokens)

    def refresh(self) -> None:
        """Reload the active tokens if any process changed them (one query otherwise)."""
        with self._lock:
            if not self.stale:
                return  # another thread refreshed meanwhile
            with self._db.read() as store:
                revision = store.get_revision(_REVISION)
                if revision != self._revision:
                    tokens = store.api_tokens(include_revoked=False)
                    self._tokens = {token.token_id: token for token in tokens}
                    self._revision = revision
            self._checked = self._monotonic()

    def authenticate(self, token: str) -> Caller:
        """The caller a presented token stands for; UNAUTHENTICATED if it is not valid.

        In memory only: call :meth:`refresh` first when :attr:`stale`.
        """
        token_id = token_id_of(token)
        stored = self._tokens.get(token_id) if token_id is not None else None
        if stored is None or not token_matches(token, stored.token_sha256):
            raise Unauthenticated("TOKEN_INVALID", "the token is not valid (unknown or revoked)")
        return Caller(token_id=stored.token_id, role=stored.role, tenant_id=stored.tenant_id)


class AccountTenants:
    """Which tenant owns which account, for tenant-scoped callers."""

    def __init__(self, db: TokenDatabase, size: int = TENANT_CACHE_SIZE) -> None:
        self._db = db
        self._size = size
        self._lock = threading.Lock()
        self._known: OrderedDict[str, str | None] = OrderedDict()

    def check_cached(self, tenant_id: str, account_ids: Iterable[str]) -> bool | None:
        """True/False when the cache decides (False raises); None when the database must."""
        unknown = False
        for account_id in account_ids:
            owner = self._known.get(account_id, _MISSING)
            if owner == _MISSING:
                unknown = True
            elif owner != tenant_id:
                raise _mismatch(tenant_id)
        return None if unknown else True

    def check(self, tenant_id: str, account_ids: Iterable[str]) -> None:
        """PERMISSION_DENIED (TENANT_MISMATCH) unless every account belongs to ``tenant_id``.

        An account that does not exist is not the tenant's either: a scoped caller
        learns nothing about the ids of other tenants. Blocking (may query).
        """
        ids = sorted(set(account_ids))
        if self.check_cached(tenant_id, ids):
            return
        with self._db.read() as store:
            found = store.account_tenants(ids)
        with self._lock:
            for account_id, owner in found.items():
                self._known[account_id] = owner
                self._known.move_to_end(account_id)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        if any(found.get(account_id, _MISSING) != tenant_id for account_id in ids):
            raise _mismatch(tenant_id)


_MISSING = "\x00missing"


def _mismatch(tenant_id: str) -> PermissionDenied:
    return PermissionDenied(
        "TENANT_MISMATCH",
        "the account does not belong to the token's tenant",
        {"tenant_id": tenant_id},
    )


__all__ = ["AccountTenants", "Authenticator", "Caller", "Role", "TokenAdmin"]
