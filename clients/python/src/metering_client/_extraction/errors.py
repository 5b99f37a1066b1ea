"""The one exception hierarchy of metering.

    MeteringError                 reason: a stable UPPER_SNAKE code
    ├── InvalidArgument           the caller's input is wrong; carries field violations
    ├── NotFound                  a named thing does not exist
    ├── AlreadyExists             a create, or an idempotency key reused with another payload
    ├── FailedPrecondition        the request is valid but the system is not in a state to do it
    ├── Unavailable               a dependency (the database) cannot be reached; retry
    ├── Unauthenticated           no credentials, or credentials that are not valid
    ├── PermissionDenied          valid credentials that may not do this
    └── ResourceExhausted         the caller is over its rate limit; retry after a delay

Only the API layer turns these into gRPC status codes (one mapping, in
``metering.api.errors``). Messages never contain prompt text or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One offending field of a request, named by its path (e.g. ``usage.input_tokens``)."""

    field: str
    description: str


class MeteringError(Exception):
    """Base of every error the service reports to callers."""

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross from the writer process to the server with pickle, whose default
        # for exceptions calls ``cls(*args)``: the subclasses take other arguments.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(
    cls: type[MeteringError], args: tuple[object, ...], state: dict[str, object]
) -> MeteringError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidArgument(MeteringError):
    """The request is malformed; ``violations`` names every offending field."""

    def __init__(self, violations: list[FieldViolation], reason: str = "INVALID_ARGUMENT") -> None:
        fields = ", ".join(v.field for v in violations)
        first = violations[0].description if violations else "invalid request"
        message = first if len(violations) == 1 else f"invalid fields: {fields}"
        super().__init__(reason, message)
        self.violations = list(violations)


class NotFound(MeteringError):
    """A named resource (account, price) does not exist."""


class AlreadyExists(MeteringError):
    """The resource or idempotency key exists with different content."""


class FailedPrecondition(MeteringError):
    """The request is well formed but cannot be served in the current state."""


class Unavailable(MeteringError):
    """A dependency is unreachable; the caller should retry with the same request_id."""


class Unauthenticated(MeteringError):
    """The call carries no valid credentials (TOKEN_MISSING, TOKEN_INVALID)."""


class PermissionDenied(MeteringError):
    """The caller may not do this (ROLE_NOT_ALLOWED, TENANT_MISMATCH)."""


class ResourceExhausted(MeteringError):
    """The caller is over a limit (RATE_LIMITED); ``retry_delay_seconds`` says when to retry."""

    def __init__(
        self,
        reason: str,
        message: str,
        retry_delay_seconds: float,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, metadata)
        self.retry_delay_seconds = max(0.0, retry_delay_seconds)


@dataclass
class Violations:
    """Collects field violations so that a request reports all of its problems at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
