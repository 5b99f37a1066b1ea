"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from metering_client._common import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    M,
    Metadata,
    build_request,
    channel_options,
    merge_metadata,
)
from metering_client.errors import from_rpc_error
from metering_client.responses import ApiFormat, record_request_from_response
from metering_client.retry import NO_RETRY, RetryPolicy
from metering_client.v1 import (
    admin_service_pb2 as admin_pb,
)
from metering_client.v1 import (
    admin_service_pb2_grpc as admin_grpc,
)
from metering_client.v1 import (
    metering_service_pb2 as pb,
)
from metering_client.v1 import (
    metering_service_pb2_grpc as pb_grpc,
)


class MeteringClient:
    """A blocking client of ``metering.v1.MeteringService`` and ``MeteringAdminService``.

    Every method takes either a request message (or a mapping of its fields) or
    the request's fields as keyword arguments, plus ``timeout`` (the deadline
    of each attempt, default :data:`DEFAULT_TIMEOUT` seconds) and ``metadata``.
    It returns the response message or raises a
    :class:`~metering_client.errors.MeteringError` subclass.

    Calls are retried by the client's :class:`~metering_client.retry.RetryPolicy`
    on UNAVAILABLE and DEADLINE_EXCEEDED, resending the same message: a
    RecordUsage or GrantCredits retry carries the same ``request_id`` (a
    CorrectUsage retry the same ``correction_id``, given or derived by the
    service from the payload), which the service records exactly once (a retry
    of a call that did succeed comes back with ``replayed = true``).
    CreateAccount is not idempotent and is not retried.

    The client is thread-safe; share one per process. Use it as a context
    manager or call :meth:`close`.

    Example::

        with MeteringClient("127.0.0.1:50051") as client:
            resp = client.record_usage(
                account_id="acme", request_id="chatcmpl-123", model="gpt-4o-mini",
                usage={"input_tokens": 1000, "output_tokens": 500},
            )
            print(resp.cost.nanos, resp.replayed)
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] | None = None,
        wait_for_ready: bool | None = None,
    ) -> None:
        """Connect to ``target`` (``host:port``).

        Args:
            target: the service address; ignored when ``channel`` is given.
            channel: an existing channel to use (not closed by :meth:`close`).
            credentials: TLS credentials; plaintext when ``None``.
            timeout: the default deadline of each attempt, in seconds.
            retry: the retry policy; ``RetryPolicy()`` by default, ``NO_RETRY`` to
                disable retries.
            metadata: metadata sent with every call (e.g. an authorization header).
            options: extra gRPC channel options.
            wait_for_ready: gRPC's wait-for-ready flag for every call.
        """
        self._own_channel = channel is None
        if channel is None:
            opts = channel_options(options)
            channel = (
                grpc.secure_channel(target, credentials, options=opts)
                if credentials is not None
                else grpc.insecure_channel(target, options=opts)
            )
        self._channel: grpc.Channel = channel
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._metadata = tuple(metadata)
        self._wait_for_ready = wait_for_ready
        self.stub = pb_grpc.MeteringServiceStub(channel)
        """The raw ``MeteringService`` stub, for anything the methods do not cover."""
        self.admin_stub = admin_grpc.MeteringAdminServiceStub(channel)
        """The raw ``MeteringAdminService`` stub (prices, account updates...)."""

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel."""
        return self._channel

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy applied to retryable calls."""
        return self._retry

    def close(self) -> None:
        """Close the channel (unless it was passed in)."""
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> MeteringClient:
        """Return the client."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the client."""
        self.close()

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected (``grpc.FutureTimeoutError`` after ``timeout``)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    # -- the call loop -------------------------------------------------------------

    def _invoke(
        self,
        method: Callable[..., M],
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        retry: bool,
    ) -> M:
        policy = self._retry if retry else NO_RETRY
        md = merge_metadata(self._metadata, metadata)
        per_attempt = self._timeout if timeout is None else timeout
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(
                    request, timeout=per_attempt, metadata=md, wait_for_ready=self._wait_for_ready
                )
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                delay = policy.next_delay(attempt, err.code, time.monotonic() - start)
                if delay is None:
                    raise err from exc
                time.sleep(delay)

    # -- MeteringAdminService ----------------------------------------------------------

    def create_account(
        self,
        request: admin_pb.CreateAccountRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> admin_pb.CreateAccountResponse:
        """Create an account (CreateAccount). Not retried: a retry could see ALREADY_EXISTS.

        Raises:
            AlreadyExistsError: ``ACCOUNT_ALREADY_EXISTS``.
            InvalidArgumentError: a bad account id or setting.
        """
        req = build_request(admin_pb.CreateAccountRequest, request, fields)
        return self._invoke(self.admin_stub.CreateAccount, req, timeout, metadata, retry=False)

    def grant_credits(
        self,
        request: admin_pb.GrantCreditsRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> admin_pb.GrantCreditsResponse:
        """Add money and/or request credits (GrantCredits); idempotent per ``request_id``.

        Raises:
            NotFoundError: ``ACCOUNT_NOT_FOUND``.
            AlreadyExistsError: ``REQUEST_ID_CONFLICT``.
            InvalidArgumentError: e.g. nothing to grant.
        """
        req = build_request(admin_pb.GrantCreditsRequest, request, fields)
        return self._invoke(self.admin_stub.GrantCredits, req, timeout, metadata, retry=True)

    # -- MeteringService -----------------------------------------------------------------

    def record_usage(
        self,
        request: pb.RecordUsageRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.RecordUsageResponse:
        """Record one LLM call's usage and debit its cost (RecordUsage).

        Idempotent per (account, ``request_id``): retries and repeats return the
        stored response with ``replayed = true``.

        Without ``usage`` (and without usage in ``response_json``) the service
        estimates the usage from ``request_json`` (+ ``request_format``) or
        ``prompt_text``, and ``completion_text`` (``usage_source`` ESTIMATED);
        with none of them it records the call as MISSING and the response's
        ``missing_usage_fallback`` says what it was charged.

        Raises:
            NotFoundError: ``ACCOUNT_NOT_FOUND``.
            FailedPreconditionError: ``PRICE_NOT_FOUND``.
            AlreadyExistsError: ``REQUEST_ID_CONFLICT`` (same id, other payload).
            InvalidArgumentError: see ``fields`` (e.g. ``usage.input_tokens``).
        """
        req = build_request(pb.RecordUsageRequest, request, fields)
        return self._invoke(self.stub.RecordUsage, req, timeout, metadata, retry=True)

    def record_usage_from_response(
        self,
        response_body: bytes | str,
        *,
        account_id: str,
        request_id: str,
        model: str,
        response_format: ApiFormat | int | str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.RecordUsageResponse:
        """Record usage from the provider's raw response body or SSE tail.

        The service extracts the usage itself (``response_json``); when the
        response has none, it estimates it from ``request_json`` (or
        ``prompt_text``) and ``completion_text`` if given. See
        :func:`~metering_client.responses.record_request_from_response`.
        """
        req = record_request_from_response(
            response_body,
            account_id=account_id,
            request_id=request_id,
            model=model,
            response_format=response_format,
            **fields,
        )
        return self._invoke(self.stub.RecordUsage, req, timeout, metadata, retry=True)

    def record_usage_batch(
        self,
        request: pb.RecordUsageBatchRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.RecordUsageBatchResponse:
        """Record up to 1000 records at once (RecordUsageBatch); one result per record.

        A record's own failure is in its result's ``error`` (see
        :func:`~metering_client.errors.from_record_error`), not raised.
        """
        req = build_request(pb.RecordUsageBatchRequest, request, fields)
        return self._invoke(self.stub.RecordUsageBatch, req, timeout, metadata, retry=True)

    def correct_usage(
        self,
        request: pb.CorrectUsageRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.CorrectUsageResponse:
        """Supersede a recorded call's usage (or cost) with a later figure (CorrectUsage).

        Names the call by ``account_id`` and the ``request_id`` it was recorded
        under, with the authoritative ``usage`` (or ``response_json`` and
        ``response_format``), optionally an exact ``cost``, a ``reason`` and a
        ``correction_id``. The difference is debited (or credited back) and
        the call counts as ``USAGE_SOURCE_CORRECTED`` from then on.

        Idempotent per (account, ``correction_id``); without one the service
        derives it from ``request_id`` and the payload, so retries and repeats
        of the same figure return the stored response with ``replayed = true``
        and change nothing. Hence retried like RecordUsage.

        Raises:
            NotFoundError: ``RECORD_NOT_FOUND`` (no call under ``request_id``) or
                ``ACCOUNT_NOT_FOUND``.
            AlreadyExistsError: ``REQUEST_ID_CONFLICT`` (``correction_id`` used with
                another payload).
            FailedPreconditionError: e.g. ``PRICE_NOT_FOUND``, ``CURRENCY_MISMATCH``.
            InvalidArgumentError: see ``fields`` (e.g. ``usage``, ``response_json``).
        """
        req = build_request(pb.CorrectUsageRequest, request, fields)
        return self._invoke(self.stub.CorrectUsage, req, timeout, metadata, retry=True)

    def estimate_tokens(
        self,
        request: pb.EstimateTokensRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.EstimateTokensResponse:
        """Count the tokens of a text or raw request and price them (EstimateTokens)."""
        req = build_request(pb.EstimateTokensRequest, request, fields)
        return self._invoke(self.stub.EstimateTokens, req, timeout, metadata, retry=True)

    def get_balance(
        self,
        request: pb.GetBalanceRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.GetBalanceResponse:
        """An account's balances (GetBalance).

        Raises:
            NotFoundError: ``ACCOUNT_NOT_FOUND``.
        """
        req = build_request(pb.GetBalanceRequest, request, fields)
        return self._invoke(self.stub.GetBalance, req, timeout, metadata, retry=True)

    def usage_summary(
        self,
        request: pb.UsageSummaryRequest | Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **fields: Any,
    ) -> pb.UsageSummaryResponse:
        """Aggregate usage over a half-open time range (UsageSummary), one page.

        ``start_time`` / ``end_time`` are ``google.protobuf.Timestamp`` messages;
        a ``datetime`` can be set with ``Timestamp.FromDatetime``.
        """
        req = build_request(pb.UsageSummaryRequest, request, fields)
        return self._invoke(self.stub.UsageSummary, req, timeout, metadata, retry=True)
