"""Authentication and authorization of calls: a grpc.aio server interceptor.

Every call to a metering service must carry ``authorization: Bearer <token>``.
What a role may call is the table :data:`RULES`, by full method name; a method
missing from it (a new RPC) is for ``admin`` tokens only. A tenant-scoped token
may touch only its tenant's accounts: each rule names where a request's
account ids are, and the interceptor checks them before the servicer runs, so
a refused call writes nothing. Health and reflection stay open.

The interceptor sets :data:`CALLER` for the servicer (CreateAccount puts a
scoped admin's accounts in its tenant). Tokens are never logged; token ids are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import code_pb2
from grpc_status import rpc_status

from metering.api.errors import to_status
from metering.domain.auth import Caller, Role, is_tenant_id
from metering.domain.errors import MeteringError, PermissionDenied, Unauthenticated, Violations
from metering.service.auth import AccountTenants, Authenticator

log = logging.getLogger(__name__)

CALLER: ContextVar[Caller | None] = ContextVar("metering_caller", default=None)

# Open to everyone: load balancers probe health, grpcurl lists services.
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

# A request's account ids: a list (possibly empty: no account, nothing to check),
# or None when the request covers every account (refused to tenant-scoped tokens).
Accounts = Callable[[Any], list[str] | None]


@dataclass(frozen=True)
class MethodRule:
    """Who may call a method (admin always may) and which accounts a request touches.

    ``accounts`` None marks a method that is not about accounts (prices): tenant-scoped
    tokens may not call it. ``tenant`` names a request's own tenant field (CreateAccount).
    """

    roles: frozenset[Role]
    accounts: Accounts | None = None
    tenant: Callable[[Any], str] | None = None


def _account_id(request: Any) -> list[str] | None:
    # Empty: the servicer refuses the request as invalid, writing nothing.
    return [request.account_id] if request.account_id else []


def _batch_accounts(request: Any) -> list[str] | None:
    return [record.account_id for record in request.records if record.account_id]


def _summary_accounts(request: Any) -> list[str] | None:
    # An empty account_id asks for all accounts: not for a tenant-scoped token.
    return [request.account_id] if request.account_id else None


def _updated_account(request: Any) -> list[str] | None:
    return [request.account.account_id] if request.account.account_id else []


def _no_accounts(_request: Any) -> list[str] | None:
    return []


_METERING = "/metering.v1.MeteringService/"
_ADMIN = "/metering.v1.MeteringAdminService/"
_RELAY = frozenset({Role.RELAY})
_RELAY_READER = frozenset({Role.RELAY, Role.READER})
_READER = frozenset({Role.READER})
_ADMIN_ONLY = frozenset({Role.ADMIN})

RULES: dict[str, MethodRule] = {
    _METERING + "RecordUsage": MethodRule(_RELAY, _account_id),
    _METERING + "RecordUsageBatch": MethodRule(_RELAY, _batch_accounts),
    _METERING + "EstimateTokens": MethodRule(_RELAY, _account_id),
    _METERING + "AuthorizeUsage": MethodRule(_RELAY, _account_id),
    _METERING + "ReleaseReservation": MethodRule(_RELAY, _account_id),
    _METERING + "GetBalance": MethodRule(_RELAY_READER, _account_id),
    _METERING + "UsageSummary": MethodRule(_READER, _summary_accounts),
    # The relay that recorded a call learns its real usage later and corrects it.
    _METERING + "CorrectUsage": MethodRule(_RELAY, _account_id),
    _ADMIN + "CreateAccount": MethodRule(
        _ADMIN_ONLY, _no_accounts, tenant=lambda request: request.tenant_id
    ),
    _ADMIN + "GrantCredits": MethodRule(_ADMIN_ONLY, _account_id),
    _ADMIN + "UpdateAccount": MethodRule(_ADMIN_ONLY, _updated_account),
    _ADMIN + "SetApiKeyBillingMode": MethodRule(_ADMIN_ONLY, _account_id),
    # ListPrices, AddPrice, RetirePrice, ImportPrices and any method not listed:
    # unscoped admin tokens only.
}
DEFAULT_RULE = MethodRule(_ADMIN_ONLY)


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` header; UNAUTHENTICATED otherwise."""
    values = [value for key, value in metadata or () if key.lower() == "authorization"]
    if not values:
        raise Unauthenticated("TOKEN_MISSING", "send authorization: Bearer <token>")
    value = values[0] if isinstance(values[0], str) else ""
    scheme, _, token = value.strip().partition(" ")
    if len(values) > 1 or scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("TOKEN_INVALID", "send one authorization: Bearer <token>")
    return token.strip()


def authorize(caller: Caller, method: str, request: Any) -> list[str]:
    """Check role and tenant rules without I/O; return the account ids to check for the
    caller's tenant (none for an unscoped caller)."""
    rule = RULES.get(method, DEFAULT_RULE)
    if caller.role is not Role.ADMIN and caller.role not in rule.roles:
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED",
            f"a {caller.role.value} token may not call {method}",
            {"role": caller.role.value, "method": method},
        )
    tenant = caller.tenant_id
    if tenant is None:
        return []
    if rule.accounts is None:
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED",
            f"a tenant-scoped token may not call {method}",
            {"role": caller.role.value, "method": method},
        )
    if rule.tenant is not None and rule.tenant(request) not in ("", tenant):
        raise _tenant_mismatch(tenant, "a tenant-scoped token may not use another tenant")
    account_ids = rule.accounts(request)
    if account_ids is None:
        raise _tenant_mismatch(tenant, "a tenant-scoped token must name one of its accounts")
    return account_ids


def _tenant_mismatch(tenant: str, message: str) -> PermissionDenied:
    return PermissionDenied("TENANT_MISMATCH", message, {"tenant_id": tenant})


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Bearer-token authentication, role and tenant checks, before any servicer runs."""

    def __init__(
        self,
        authenticator: Authenticator,
        tenants: AccountTenants,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._authenticator = authenticator
        self._tenants = tenants
        self._executor = executor

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.lstrip("/").split("/", 1)[0] in OPEN_SERVICES:
            return handler
        if handler.unary_stream is not None:
            return self._checked_stream(handler, method)
        if handler.unary_unary is None:
            # No metering method takes a stream of requests; refuse rather than pass one
            # unchecked.
            return _refusing(handler, method)
        behavior = handler.unary_unary

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self._admitted(method, request, context)
            token = CALLER.set(caller)
            try:
                return await behavior(request, context)
            finally:
                CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _checked_stream(self, handler: Any, method: str) -> Any:
        """A server-streaming method (ExportUsage): admitted before its first message."""
        behavior = handler.unary_stream

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            caller = await self._admitted(method, request, context)
            token = CALLER.set(caller)
            try:
                async for message in behavior(request, context):
                    yield message
            finally:
                CALLER.reset(token)

        return grpc.unary_stream_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _admitted(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> Caller:
        """The caller, or the call ends here with the refusal's status."""
        try:
            return await self._admit(method, request, context)
        except MeteringError as exc:
            await context.abort_with_status(rpc_status.to_status(to_status(exc)))
        except Exception:
            log.exception("authorization of %s failed", method)
            internal = to_status(MeteringError("INTERNAL", "internal error"))
            internal.code = code_pb2.INTERNAL
            await context.abort_with_status(rpc_status.to_status(internal))
        raise AssertionError("unreachable: abort_with_status raises")

    async def _admit(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Caller:
        loop = asyncio.get_running_loop()
        try:
            token = bearer_token(context.invocation_metadata())
        except Unauthenticated as exc:
            log.info("refused %s: %s (peer %s)", method, exc.reason, context.peer())
            raise
        if self._authenticator.stale:
            await loop.run_in_executor(self._executor, self._authenticator.refresh)
        try:
            caller = self._authenticator.authenticate(token)
        except Unauthenticated as exc:
            log.info("refused %s: %s (peer %s)", method, exc.reason, context.peer())
            raise
        try:
            account_ids = authorize(caller, method, request)
            tenant = caller.tenant_id
            if (
                tenant is not None
                and account_ids
                and self._tenants.check_cached(tenant, account_ids) is None
            ):
                await loop.run_in_executor(self._executor, self._tenants.check, tenant, account_ids)
        except PermissionDenied as exc:
            log.info("refused %s for token %s: %s", method, caller.token_id, exc.reason)
            raise
        return caller


def _refusing(handler: Any, method: str) -> Any:
    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        denied = PermissionDenied("ROLE_NOT_ALLOWED", f"{method} is not available")
        await context.abort_with_status(rpc_status.to_status(to_status(denied)))

    kinds = (
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    make = next(maker for behavior, maker in kinds if behavior is not None)
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def new_account_tenant(v: Violations, requested: str) -> str | None:
    """The tenant of an account being created: the one asked for, else the caller's.

    The interceptor has already refused a scoped caller asking for another tenant.
    """
    caller = CALLER.get()
    tenant = requested or (caller.tenant_id if caller is not None else None) or None
    if tenant is not None and not is_tenant_id(tenant):
        v.add("tenant_id", "tenant_id must be 1-128 characters of [A-Za-z0-9._:@/-]")
    return tenant


def current_caller() -> Caller | None:
    """The authenticated caller of the current call; None when authentication is off."""
    return CALLER.get()


__all__ = [
    "CALLER",
    "RULES",
    "AuthInterceptor",
    "MethodRule",
    "authorize",
    "current_caller",
    "new_account_tenant",
]
