"""The observability interceptor: a span and a latency point per RPC, and log context.

Every unary call of a registered method gets a SERVER span named after its
full method (``metering.v1.MeteringService/RecordUsage``), continuing the
caller's W3C ``traceparent`` when it sent one, with ``rpc.system``,
``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code`` and, for errors,
``metering.reason`` (the ErrorInfo reason: a fixed UPPER_SNAKE code). The
same attributes, less the reason of successful calls, label the
``rpc.server.call.duration`` histogram. Health checks are measured but not
traced (load balancers call them every few seconds); streaming calls
(health Watch, reflection) pass through untouched, as do unknown methods,
whose names the caller chose.

While the call runs, :data:`metering.telemetry.rpc_method_var` and
:data:`metering.telemetry.request_id_var` are set, so log records written
on its behalf carry them. Nothing of the request but a bounded, printable
``request_id`` is ever read: no account ids, no bodies, no credentials.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from metering import telemetry

HEALTH_SERVICE = "grpc.health.v1.Health"
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_REQUEST_ID_MAX = 128
# Per the OpenTelemetry gRPC conventions, these codes are the server's fault; the
# others (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's and leave the span unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _reason(context: grpc.aio.ServicerContext) -> str | None:
    """The ErrorInfo reason of an aborted call, read from its status details."""
    try:
        trailing = context.trailing_metadata() or ()
    except Exception:  # no trailing metadata on this context
        return None
    for key, value in trailing:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                return info.reason if _REASON.fullmatch(info.reason) else "OTHER"
    return None


def _request_id(request: Any) -> str | None:
    """The caller's idempotency key when the message has one, if short and printable."""
    value = getattr(request, "request_id", None)
    if not isinstance(value, str) or not value:
        return None
    if len(value) > _REQUEST_ID_MAX or not value.isprintable():
        return "<invalid>"
    return value


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Put first in ``interceptors=`` so that it sees every other interceptor's outcome."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        full_method = str(handler_call_details.method)
        behavior = handler.unary_unary
        traced = not full_method.lstrip("/").startswith(HEALTH_SERVICE + "/")
        # Only the propagation headers (traceparent, ...): never credentials.
        fields = propagate.get_global_textmap().fields
        metadata = {
            str(k): v
            for k, v in (handler_call_details.invocation_metadata or ())
            if isinstance(v, str) and k in fields
        }

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await _observe(behavior, request, context, full_method, traced, metadata)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _observe(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
    request: Any,
    context: grpc.aio.ServicerContext,
    full_method: str,
    traced: bool,
    metadata: dict[str, str],
) -> Any:
    current = telemetry.instruments()
    service, method = _split(full_method)
    name = f"{service}/{method}"
    attributes: dict[str, str | int] = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": method,
    }
    method_token = telemetry.rpc_method_var.set(name)
    request_token = telemetry.request_id_var.set(_request_id(request))
    started = time.perf_counter()
    span: trace.Span = trace.INVALID_SPAN
    parent = propagate.extract(metadata) if metadata else None
    if traced:
        span = current.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
    code = grpc.StatusCode.OK
    reason: str | None = None
    try:
        # No exception events: error messages may name accounts. The status is set below.
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            response = await behavior(request, context)
        code = _code_of(context)
        return response
    except grpc.aio.AbortError:
        code = _code_of(context, grpc.StatusCode.UNKNOWN)
        reason = _reason(context)
        raise
    except BaseException as exc:
        # Cancellation (the caller went away, or shutdown) or an error that escaped the
        # error mapper: gRPC answers CANCELLED or UNKNOWN.
        code = (
            grpc.StatusCode.CANCELLED
            if isinstance(exc, asyncio.CancelledError)
            else grpc.StatusCode.UNKNOWN
        )
        raise
    finally:
        elapsed = time.perf_counter() - started
        attributes["rpc.grpc.status_code"] = code.value[0]
        if reason is not None:
            attributes["metering.reason"] = reason
        current.rpc_duration.record(elapsed, attributes)
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if reason is not None:
                span.set_attribute("metering.reason", reason)
            if code in _SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        telemetry.request_id_var.reset(request_token)
        telemetry.rpc_method_var.reset(method_token)


def _code_of(
    context: grpc.aio.ServicerContext, default: grpc.StatusCode = grpc.StatusCode.OK
) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return next((c for c in grpc.StatusCode if c.value[0] == code), default)
    return default
