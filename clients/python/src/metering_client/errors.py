"""Typed errors of the metering service.

The service answers every failure with a ``google.rpc.Status`` whose details
carry a ``google.rpc.ErrorInfo`` (a stable ``reason`` such as
``ACCOUNT_NOT_FOUND``, domain ``metering.dev``) and, for ``INVALID_ARGUMENT``, a
``google.rpc.BadRequest`` naming each offending field. :func:`from_rpc_error`
turns a ``grpc.RpcError`` into the matching :class:`MeteringError` subclass
with those details parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from metering_client.v1 import metering_service_pb2

ERROR_DOMAIN = "metering.dev"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One offending request field of an ``INVALID_ARGUMENT`` error.

    ``field`` is the proto field path (snake_case), e.g. ``usage.input_tokens``.
    """

    field: str
    description: str = ""


class MeteringError(Exception):
    """Base class of every error returned by the metering service.

    Attributes:
        code: the gRPC status code.
        message: the developer-facing message.
        reason: the stable ``ErrorInfo.reason`` (e.g. ``PRICE_NOT_FOUND``); empty
            when the server sent none (e.g. a transport failure).
        domain: the ``ErrorInfo.domain`` (``metering.dev``).
        metadata: the ``ErrorInfo.metadata``.
        field_violations: the ``BadRequest`` field violations, in order.
    """

    #: The code a subclass stands for (``None`` on the base class).
    default_code: grpc.StatusCode | None = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        """Create an error; ``code`` defaults to the subclass's code (else UNKNOWN)."""
        super().__init__(message)
        self.code: grpc.StatusCode = code or self.default_code or grpc.StatusCode.UNKNOWN
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    @property
    def fields(self) -> list[str]:
        """The offending field paths, in the order the server gave them."""
        return [v.field for v in self.field_violations]

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed if retried unchanged (transport trouble)."""
        return self.code in RETRYABLE_CODES

    def __str__(self) -> str:
        """``CODE REASON: message [fields]``."""
        head = self.code.name + (f" {self.reason}" if self.reason else "")
        tail = f" {self.fields}" if self.field_violations else ""
        return f"{head}: {self.message}{tail}"

    def __repr__(self) -> str:
        """A readable representation with code, reason and fields."""
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, fields={self.fields!r})"
        )


class InvalidArgumentError(MeteringError):
    """INVALID_ARGUMENT: the request is malformed; see :attr:`fields`."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MeteringError):
    """NOT_FOUND, e.g. ``ACCOUNT_NOT_FOUND``."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(MeteringError):
    """ALREADY_EXISTS: ``ACCOUNT_ALREADY_EXISTS`` or ``REQUEST_ID_CONFLICT``.

    ``REQUEST_ID_CONFLICT`` means the request_id was already used with a
    different payload: a bug in the caller, never retried.
    """

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(MeteringError):
    """FAILED_PRECONDITION, e.g. ``PRICE_NOT_FOUND`` or ``BALANCE_OUT_OF_RANGE``."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDeniedError(MeteringError):
    """PERMISSION_DENIED."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(MeteringError):
    """UNAUTHENTICATED."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhaustedError(MeteringError):
    """RESOURCE_EXHAUSTED, e.g. a message larger than the server accepts."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(MeteringError):
    """UNAVAILABLE: the service could not be reached or is shutting down (retryable)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(MeteringError):
    """DEADLINE_EXCEEDED: no answer within the deadline (retryable)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(MeteringError):
    """CANCELLED: the call was cancelled (by the caller, or by a server shutting down)."""

    default_code = grpc.StatusCode.CANCELLED


class InternalError(MeteringError):
    """INTERNAL: a server bug; details are in the server's log."""

    default_code = grpc.StatusCode.INTERNAL


#: Codes on which a call is retried with the same request (and request_id). A server
#: shutting down answers CANCELLED to calls it had received but not started; nothing was
#: written for them, so they are retried like UNAVAILABLE.
RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)

_BY_CODE: dict[grpc.StatusCode, type[MeteringError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        PermissionDeniedError,
        UnauthenticatedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
        InternalError,
    )
    if cls.default_code is not None
}
_BY_VALUE: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def error_class(code: grpc.StatusCode) -> type[MeteringError]:
    """The :class:`MeteringError` subclass for a status code (the base class if none)."""
    return _BY_CODE.get(code, MeteringError)


def status_code(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a numeric ``google.rpc.Code`` (UNKNOWN if unknown)."""
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def _details(status: status_pb2.Status) -> dict[str, Any]:
    out: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out["reason"] = info.reason
            out["domain"] = info.domain
            out["metadata"] = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    out["field_violations"] = violations
    return out


def from_status(
    code: grpc.StatusCode,
    message: str,
    trailing_metadata: Sequence[tuple[str, str | bytes]] | None,
) -> MeteringError:
    """Build the typed error from a status code, message and trailing metadata."""
    kwargs: dict[str, Any] = {}
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed detail must not hide the error
                break
            kwargs = _details(status)
            if status.message:
                message = status.message
            break
    return error_class(code)(message, code=code, **kwargs)


def from_rpc_error(exc: grpc.RpcError) -> MeteringError:
    """Translate a ``grpc.RpcError`` (sync or ``grpc.aio.AioRpcError``) to a typed error."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = exc.details() if hasattr(exc, "details") else str(exc)
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    err = from_status(code or grpc.StatusCode.UNKNOWN, message or "", trailing)
    err.__cause__ = exc
    return err


def from_record_error(error: metering_service_pb2.RecordError) -> MeteringError:
    """The typed error of one failed record of a RecordUsageBatch response."""
    code = status_code(error.code)
    return error_class(code)(
        error.message,
        code=code,
        reason=error.reason,
        domain=ERROR_DOMAIN if error.reason else "",
        field_violations=[FieldViolation(f) for f in error.fields],
    )
