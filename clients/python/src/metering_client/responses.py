"""Helpers for raw provider responses.

The recommended way to record a call is to send the provider's raw response
body (or the tail of its SSE stream) as ``RecordUsageRequest.response_json``:
the **service's extraction is authoritative** (it knows every provider format,
validates the counts and flags missing usage). :func:`record_request_from_response`
builds such a request.

:func:`usage_from_response` runs the service's own extraction locally (the
same code, vendored), for relays that want the numbers before or without
calling the service, e.g. for logging or a local quota.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metering_client._extraction.errors import InvalidArgument
from metering_client._extraction.extraction import ResponseFormat, extract_usage
from metering_client.v1 import metering_service_pb2 as pb
from metering_client.v1 import types_pb2

#: The ``metering.v1.ApiFormat`` enum (``ApiFormat.Value("API_FORMAT_...")``).
ApiFormat = types_pb2.ApiFormat

OPENAI_CHAT = types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS
OPENAI_RESPONSES = types_pb2.API_FORMAT_OPENAI_RESPONSES
ANTHROPIC = types_pb2.API_FORMAT_ANTHROPIC_MESSAGES
GEMINI = types_pb2.API_FORMAT_GEMINI_GENERATE_CONTENT


def _format_value(fmt: int | str | None) -> int:
    if fmt is None:
        return types_pb2.API_FORMAT_UNSPECIFIED
    if isinstance(fmt, str):
        name = fmt if fmt.startswith("API_FORMAT_") else "API_FORMAT_" + fmt.upper()
        return int(types_pb2.ApiFormat.Value(name))
    return int(fmt)


def record_request_from_response(
    response_body: bytes | str,
    *,
    account_id: str,
    request_id: str,
    model: str,
    response_format: int | str | None = None,
    request_json: bytes | str | Mapping[str, Any] | None = None,
    request_format: int | str | None = None,
    **fields: Any,
) -> pb.RecordUsageRequest:
    """A RecordUsageRequest whose usage the service extracts from the raw response.

    When the response carries no usage (e.g. an OpenAI stream without
    ``stream_options.include_usage``), the service estimates it from
    ``request_json`` (or ``prompt_text``) and ``completion_text`` when given
    (``usage_source`` ESTIMATED), and records the call as MISSING otherwise.

    Args:
        response_body: the provider's response body, or the tail of its SSE
            stream (the last events, which carry the usage); at most 4 MiB.
        account_id: the account to debit.
        request_id: the idempotency key (e.g. the provider's completion id).
        model: the model called.
        response_format: an ``ApiFormat`` value or name (``"OPENAI_CHAT_COMPLETIONS"``);
            ``None`` lets the service detect it.
        request_json: for an estimate when the response has no usage: the raw
            request body the relay forwarded (bytes, str or a parsed dict), at
            most 4 MiB.
        request_format: the ``ApiFormat`` of ``request_json``, value or name;
            ``None`` lets the service detect it.
        **fields: other RecordUsageRequest fields (``provider``, ``api_key_id``,
            ``service``, ``streamed``, ``labels``, ``event_time``, and for an
            estimate ``prompt_text`` and ``completion_text``: the text the
            relay forwarded, e.g. a stream's concatenated deltas).
    """
    body = response_body.encode() if isinstance(response_body, str) else bytes(response_body)
    if request_json is not None:
        fields["request_json"] = _raw(request_json)
    if request_format is not None:
        fields["request_format"] = _format_value(request_format)
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id,
        model=model,
        response_json=body,
        response_format=_format_value(response_format),  # type: ignore[arg-type]
        **fields,
    )


def _raw(body: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(body, Mapping):
        return json.dumps(body).encode()
    if isinstance(body, str):
        return body.encode()
    return bytes(body)


def detect_format(body: bytes | str | Mapping[str, Any]) -> int | None:
    """The ``ApiFormat`` of a provider response body or SSE tail, or None if unknown."""
    try:
        extracted = extract_usage(_raw(body), None)
    except InvalidArgument:
        return None
    return int(types_pb2.ApiFormat.Value("API_FORMAT_" + extracted.format.value))


def usage_from_response(
    body: bytes | str | Mapping[str, Any],
    response_format: int | str | None = None,
) -> types_pb2.TokenUsage | None:
    """The normalized usage of a provider response body or SSE tail, read locally.

    This runs the service's own extraction (vendored from ``metering/domain``
    by ``scripts/gen``), so the numbers are the ones the service will record
    for the same ``response_json``: OpenAI chat completions and responses,
    Anthropic messages, Gemini generateContent, Cloudflare Workers AI and Dify,
    as whole bodies or SSE tails. Returns ``None`` when the body carries no
    usage (e.g. a stream without ``stream_options.include_usage``), when its
    format cannot be detected, or when the service would refuse it; an
    all-zero usage block for a non-empty completion is returned as zeros (the
    service records such a call as missing usage).
    """
    raw = _raw(body)
    value = _format_value(response_format)
    fmt = (
        ResponseFormat(types_pb2.ApiFormat.Name(value).removeprefix("API_FORMAT_"))
        if value
        else None
    )
    try:
        extracted = extract_usage(raw, fmt)
    except InvalidArgument:
        return None
    usage = extracted.usage
    if usage is None:
        return None
    return types_pb2.TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )
