"""Requests that do not parse are the caller's fault: INVALID_ARGUMENT, not UNKNOWN.

grpc parses a request before any servicer code runs, and a DecodeError there
surfaces as UNKNOWN. This interceptor swaps each unary method's deserializer
for one that turns a parse failure into a marker, and answers the marker with
INVALID_ARGUMENT (reason MALFORMED_REQUEST) before the other interceptors or
the servicer see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from metering.api.errors import to_status
from metering.domain.errors import FieldViolation, InvalidArgument


class _Malformed:
    """Stands for a request that could not be parsed."""


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Outermost interceptor: unparsable requests never reach a servicer."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if handler.unary_unary is None and handler.unary_stream is None:
            return handler
        parse = handler.request_deserializer

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError:
                return _Malformed()

        async def refuse_malformed(request: Any, context: grpc.aio.ServicerContext) -> None:
            if isinstance(request, _Malformed):
                error = InvalidArgument(
                    [FieldViolation("request", "the request is not a valid protobuf message")],
                    reason="MALFORMED_REQUEST",
                )
                await context.abort_with_status(rpc_status.to_status(to_status(error)))

        if handler.unary_stream is not None:
            streaming = handler.unary_stream

            async def guarded_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await refuse_malformed(request, context)
                async for message in streaming(request, context):
                    yield message

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        behavior = handler.unary_unary

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await refuse_malformed(request, context)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
