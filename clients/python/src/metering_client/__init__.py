"""Python client of the metering gRPC service (package ``metering.v1``).

- :class:`MeteringClient` / :class:`AsyncMeteringClient`: one method per RPC,
  default deadlines, retries on UNAVAILABLE / DEADLINE_EXCEEDED with the same
  request (hence the same ``request_id``), typed errors.
- :class:`UsageReporter`: a background reporter for relays; usage records are
  appended to a durable SQLite spool, sent in RecordUsageBatch calls, and
  replayed after an outage or a restart of the relay.
- :func:`usage_from_response`, :func:`record_request_from_response`: helpers
  for raw provider responses (OpenAI, Anthropic, Gemini).
- :mod:`metering_client.v1`: the generated protobuf messages and stubs.
"""

from __future__ import annotations

__version__ = "0.1.0"

from metering_client.aio import AsyncMeteringClient
from metering_client.client import MeteringClient
from metering_client.errors import (
    AlreadyExistsError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    MeteringError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from metering_client.reporter import ReportOutcome, UsageReporter
from metering_client.responses import (
    ApiFormat,
    detect_format,
    record_request_from_response,
    usage_from_response,
)
from metering_client.retry import NO_RETRY, RetryPolicy
from metering_client.v1.admin_service_pb2 import (
    CreateAccountRequest,
    CreateAccountResponse,
    GrantCreditsRequest,
    GrantCreditsResponse,
)
from metering_client.v1.metering_service_pb2 import (
    CorrectUsageRequest,
    CorrectUsageResponse,
    EstimateTokensRequest,
    EstimateTokensResponse,
    GetBalanceRequest,
    GetBalanceResponse,
    RecordUsageBatchRequest,
    RecordUsageBatchResponse,
    RecordUsageRequest,
    RecordUsageResponse,
    UsageSummaryRequest,
    UsageSummaryResponse,
)
from metering_client.v1.types_pb2 import MissingUsageFallback, Money, TokenUsage, UsageSource

__all__ = [
    "NO_RETRY",
    "AlreadyExistsError",
    "ApiFormat",
    "AsyncMeteringClient",
    "CancelledError",
    "CorrectUsageRequest",
    "CorrectUsageResponse",
    "CreateAccountRequest",
    "CreateAccountResponse",
    "DeadlineExceededError",
    "EstimateTokensRequest",
    "EstimateTokensResponse",
    "FailedPreconditionError",
    "FieldViolation",
    "GetBalanceRequest",
    "GetBalanceResponse",
    "GrantCreditsRequest",
    "GrantCreditsResponse",
    "InternalError",
    "InvalidArgumentError",
    "MeteringClient",
    "MeteringError",
    "MissingUsageFallback",
    "Money",
    "NotFoundError",
    "PermissionDeniedError",
    "RecordUsageBatchRequest",
    "RecordUsageBatchResponse",
    "RecordUsageRequest",
    "RecordUsageResponse",
    "ReportOutcome",
    "ResourceExhaustedError",
    "RetryPolicy",
    "TokenUsage",
    "UnauthenticatedError",
    "UnavailableError",
    "UsageReporter",
    "UsageSource",
    "UsageSummaryRequest",
    "UsageSummaryResponse",
    "__version__",
    "detect_format",
    "record_request_from_response",
    "usage_from_response",
]
