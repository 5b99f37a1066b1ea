"""Callers, roles and API tokens (pure: no I/O).

A token is ``mt_<token_id>_<secret>``: ``token_id`` (12 hex characters) is
public, names the token in listings and logs, and finds its row; the secret
is 32 random bytes. Only the SHA-256 of the whole token is stored, and it is
compared in constant time. Tokens are high-entropy, so a plain hash (no salt,
no key stretching) is enough: guessing one is as hard as guessing the secret.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "mt"  # noqa: S105 - a format marker, not a secret
_TOKEN = re.compile(r"mt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TENANT_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
NAME_LENGTH_MAX = 128


class Role(enum.Enum):
    """What a token may call; the method table is in ``metering.api.auth``."""

    RELAY = "relay"
    READER = "reader"
    ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token's id, role and tenant (None: every tenant)."""

    token_id: str
    role: Role
    tenant_id: str | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    token_id: str
    name: str
    role: Role
    tenant_id: str | None
    token_sha256: str
    create_time_us: int
    revoke_time_us: int | None = None


def is_tenant_id(value: str) -> bool:
    return bool(_TENANT_ID.fullmatch(value))


def new_token() -> tuple[str, str]:
    """A fresh ``(token_id, token)``; the token is shown once and never stored."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    """The public id of a well-formed token, None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(token_sha256(token).encode(), stored_sha256.encode())
