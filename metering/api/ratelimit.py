"""Per-caller rate limits on the expensive RPCs: a grpc.aio server interceptor.

Each (caller, method group) has a token bucket: ``per_second`` tokens flow in,
at most ``burst`` are kept, a call takes its cost or is refused with
RESOURCE_EXHAUSTED (ErrorInfo reason ``RATE_LIMITED``, a ``google.rpc.RetryInfo``
saying when its cost will be there) before the servicer runs, so nothing is
written. What a call costs may depend on its request, so the check runs inside
the handler, on the deserialized request:

=================  ====================================  ==========================
group              methods                               cost of a call
=================  ====================================  ==========================
``estimate``       EstimateTokens                        1
                   AuthorizeUsage with ``request_json``  1 (without it: free)
``summary``        UsageSummary                          ceil(range days / 31)
``import``         ImportPrices                          1
=================  ====================================  ==========================

A cost above ``burst`` is charged as ``burst`` (a full bucket), so every valid
call can pass eventually. Other methods are not limited.

The caller is the authenticated token (:data:`metering.api.auth.CALLER`, so this
interceptor goes after authentication) or, without authentication, the peer's
address: every process on one host, all loopback clients included, then shares
one bucket.

The buckets live in the memory of one server process: with N replicas (or
``serve --workers N``) a caller may make N times the configured rate. Memory is
bounded: each group tracks at most ``max_callers`` callers, the least recently
seen forgotten first (a forgotten caller starts again with a full bucket).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import grpc
from grpc_status import rpc_status

from metering.api.auth import current_caller
from metering.api.errors import to_status
from metering.domain.errors import ResourceExhausted

log = logging.getLogger(__name__)

ESTIMATE = "estimate"
SUMMARY = "summary"
IMPORT = "import"
GROUPS = (ESTIMATE, SUMMARY, IMPORT)

MAX_CALLERS_DEFAULT = 10_000
_SECONDS_PER_DAY = 86_400
SUMMARY_DAYS_PER_TOKEN = 31


@dataclass(frozen=True)
class Limit:
    """``per_second`` tokens refill a bucket of ``burst``; ``per_second`` 0: unlimited."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0

    def __str__(self) -> str:
        return "unlimited" if self.unlimited else f"{self.per_second:g}/s burst {self.burst}"


class TokenBucket:
    """A token bucket on a caller-supplied clock (seconds); starts full."""

    __slots__ = ("_capacity", "_rate", "_tokens", "_updated")

    def __init__(self, limit: Limit, now: float) -> None:
        self._rate = limit.per_second
        self._capacity = float(max(1, limit.burst))
        self._tokens = self._capacity
        self._updated = now

    @property
    def tokens(self) -> float:
        return self._tokens

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens and return 0.0, or take nothing and return the seconds
        until ``cost`` tokens will be there. A cost above the capacity costs the capacity."""
        elapsed = max(0.0, now - self._updated)  # a clock that steps back refills nothing
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = max(self._updated, now)
        cost = min(float(cost), self._capacity)
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self._rate


class RateLimiter:
    """Token buckets per (caller, group), at most ``max_callers`` per group (LRU)."""

    def __init__(
        self,
        limits: Mapping[str, Limit],
        max_callers: int = MAX_CALLERS_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_callers < 1:
            raise ValueError("max_callers must be at least 1")
        self._limits = {group: limit for group, limit in limits.items() if not limit.unlimited}
        self._max_callers = max_callers
        self._clock = clock
        self._buckets: dict[str, OrderedDict[str, TokenBucket]] = {
            group: OrderedDict() for group in self._limits
        }

    def limited(self, group: str) -> bool:
        return group in self._limits

    def tracked(self, group: str) -> int:
        """How many callers ``group`` has buckets for."""
        return len(self._buckets.get(group, ()))

    def acquire(self, caller: str, group: str, cost: float) -> float:
        """Charge ``caller`` ``cost`` tokens of ``group``: 0.0 if allowed, else the retry delay
        in seconds (and nothing charged). A cost of 0 and an unlimited group always pass."""
        limit = self._limits.get(group)
        if limit is None or cost <= 0:
            return 0.0
        now = self._clock()
        buckets = self._buckets[group]
        bucket = buckets.get(caller)
        if bucket is None:
            bucket = buckets[caller] = TokenBucket(limit, now)
            if len(buckets) > self._max_callers:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(caller)
        return bucket.take(cost, now)


# What a call costs, from its request; 0: not limited.
Cost = Callable[[Any], float]


def _one(_request: Any) -> float:
    return 1.0


def _with_request_json(request: Any) -> float:
    return 1.0 if request.request_json else 0.0


def summary_cost(request: Any) -> float:
    """ceil(range days / 31), at least 1: a year costs 12. An invalid range costs 1
    (the servicer refuses it)."""
    if not (request.HasField("start_time") and request.HasField("end_time")):
        return 1.0
    # The raw fields: a malformed timestamp (nanos out of range) is the servicer's to refuse.
    seconds = request.end_time.seconds - request.start_time.seconds
    if seconds <= 0:
        return 1.0
    return float(max(1, math.ceil(seconds / (_SECONDS_PER_DAY * SUMMARY_DAYS_PER_TOKEN))))


_METERING = "/metering.v1.MeteringService/"
_ADMIN = "/metering.v1.MeteringAdminService/"

RULES: dict[str, tuple[str, Cost]] = {
    _METERING + "EstimateTokens": (ESTIMATE, _one),
    _METERING + "AuthorizeUsage": (ESTIMATE, _with_request_json),
    _METERING + "UsageSummary": (SUMMARY, summary_cost),
    _ADMIN + "ImportPrices": (IMPORT, _one),
}


def peer_host(peer: str) -> str:
    """The address of ``context.peer()`` without its port: ``ipv4:10.0.0.7:53211`` ->
    ``10.0.0.7``, ``ipv6:%5B::1%5D:53211`` -> ``::1``; anything else as it is."""
    kind, _, address = unquote(peer or "").partition(":")
    if kind in ("ipv4", "ipv6") and address:
        host = address.rpartition(":")[0] or address
        return host.strip("[]")
    return peer or "unknown"


def caller_key(context: grpc.aio.ServicerContext) -> str:
    """Whom a call is charged to: its token, else (no authentication) its peer address."""
    caller = current_caller()
    if caller is not None:
        return f"token:{caller.token_id}"
    return f"peer:{peer_host(context.peer())}"


class RateLimitInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls over their caller's rate with RESOURCE_EXHAUSTED before the servicer runs."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        rule = RULES.get(method)
        if handler is None or handler.unary_unary is None or rule is None:
            return handler
        group, cost_of = rule
        if not self._limiter.limited(group):
            return handler
        behavior = handler.unary_unary
        limiter = self._limiter

        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = caller_key(context)
            try:
                cost = cost_of(request)
            except Exception:  # a cost must never fail a call the servicer would answer
                log.warning("cannot price %s for rate limiting; charging 1", method, exc_info=True)
                cost = 1.0
            delay = limiter.acquire(caller, group, cost)
            if delay > 0:
                log.info("rate limited %s for %s: retry in %.3fs", method, caller, delay)
                exhausted = ResourceExhausted(
                    "RATE_LIMITED",
                    f"over the {group} rate limit; retry in {delay:.3f}s",
                    delay,
                    {"group": group},
                )
                await context.abort_with_status(rpc_status.to_status(to_status(exhausted)))
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


__all__ = [
    "GROUPS",
    "RULES",
    "Limit",
    "RateLimitInterceptor",
    "RateLimiter",
    "TokenBucket",
    "caller_key",
    "peer_host",
    "summary_cost",
]
