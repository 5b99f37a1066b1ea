"""The one place where errors become gRPC statuses.

Domain errors map by class to a status code and carry an ErrorInfo (stable
reason) and, for invalid arguments, a BadRequest with each field violation;
RESOURCE_EXHAUSTED carries a RetryInfo with the delay after which to retry.
Anything else is INTERNAL with a generic message: internals never leak to
callers, and the exception is logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from metering.domain import errors
from metering.v1 import metering_service_pb2

log = logging.getLogger(__name__)

ERROR_DOMAIN = "metering.dev"

_CODES: tuple[tuple[type[errors.MeteringError], int], ...] = (
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
)


def to_status(exc: errors.MeteringError) -> status_pb2.Status:
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), code_pb2.INTERNAL)
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata)
    ]
    if isinstance(exc, errors.InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in exc.violations
                ]
            )
        )
    if isinstance(exc, errors.ResourceExhausted):
        delay = duration_pb2.Duration()
        # Whole milliseconds, rounded up: never tell a caller to retry too early.
        delay.FromMilliseconds(max(1, math.ceil(exc.retry_delay_seconds * 1000)))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code, message=exc.message, details=packed)


def record_error(exc: errors.MeteringError) -> metering_service_pb2.RecordError:
    """A batch record's error: the same code, reason and fields RecordUsage would give."""
    status = to_status(exc)
    fields = exc.violations if isinstance(exc, errors.InvalidArgument) else []
    return metering_service_pb2.RecordError(
        code=status.code,
        message=status.message,
        reason=exc.reason,
        fields=[v.field for v in fields],
    )


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def mapped(
    method: Callable[[Any, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]],
) -> Callable[[Any, _Req, grpc.aio.ServicerContext], Awaitable[_Resp]]:
    """Wrap a servicer method so that every error leaves through :func:`to_status`."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: _Req, context: grpc.aio.ServicerContext) -> _Resp:
        try:
            return await method(self, request, context)
        except errors.MeteringError as exc:
            await context.abort_with_status(rpc_status.to_status(to_status(exc)))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in %s", method.__qualname__)
            internal = errors.MeteringError("INTERNAL", "internal error")
            status = to_status(internal)
            status.code = code_pb2.INTERNAL
            await context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("unreachable: abort_with_status raises")

    return wrapper


def mapped_stream(
    method: Callable[[Any, _Req, grpc.aio.ServicerContext], AsyncIterator[_Resp]],
) -> Callable[[Any, _Req, grpc.aio.ServicerContext], AsyncIterator[_Resp]]:
    """:func:`mapped` for a server-streaming method (an async generator).

    An error before the first message ends the call with that status and no
    messages; an error after some ends it with the status after them, so a
    client never takes a truncated stream for a complete one.
    """

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: _Req, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[_Resp]:
        try:
            async for message in method(self, request, context):
                yield message
        except errors.MeteringError as exc:
            await context.abort_with_status(rpc_status.to_status(to_status(exc)))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in %s", method.__qualname__)
            internal = errors.MeteringError("INTERNAL", "internal error")
            status = to_status(internal)
            status.code = code_pb2.INTERNAL
            await context.abort_with_status(rpc_status.to_status(status))

    return wrapper
