"""Helpers for raw provider responses.

The recommended way to record a call is to send the provider's raw response
body (or the tail of its SSE stream) as ``RecordUsageRequest.response_json``:
the **service's extraction is authoritative** (it knows every provider format,
validates the counts and flags missing usage). :func:`record_request_from_response`
builds such a request.

:func:`usage_from_response` is a small local reading of the common shapes
(OpenAI chat completions and responses, Anthropic messages, Gemini
generateContent; whole bodies or SSE tails) for relays that want the numbers
before or without calling the service, e.g. for logging or a local quota. It
follows the service's normalization (``input_tokens`` includes cached tokens,
``output_tokens`` includes reasoning) but does not validate as strictly; when
the two disagree, the service is right.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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
    **fields: Any,
) -> pb.RecordUsageRequest:
    """A RecordUsageRequest whose usage the service extracts from the raw response.

    Args:
        response_body: the provider's response body, or the tail of its SSE
            stream (the last events, which carry the usage); at most 4 MiB.
        account_id: the account to debit.
        request_id: the idempotency key (e.g. the provider's completion id).
        model: the model called.
        response_format: an ``ApiFormat`` value or name (``"OPENAI_CHAT_COMPLETIONS"``);
            ``None`` lets the service detect it.
        **fields: other RecordUsageRequest fields (``provider``, ``api_key_id``,
            ``service``, ``streamed``, ``labels``, ``event_time`` ...).
    """
    body = response_body.encode() if isinstance(response_body, str) else bytes(response_body)
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id,
        model=model,
        response_json=body,
        response_format=_format_value(response_format),  # type: ignore[arg-type]
        **fields,
    )


def _events(body: bytes | str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON objects of a body: one document, or the ``data:`` events of an SSE tail."""
    if isinstance(body, Mapping):
        return [dict(body)]
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            return [doc]
        if isinstance(doc, list):  # Gemini's non-SSE streaming: a JSON array of chunks
            return [d for d in doc if isinstance(d, dict)]
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue  # a tail may start mid-event
        if isinstance(obj, dict):
            out.append(obj)
    return out


def detect_format(body: bytes | str | Mapping[str, Any]) -> int | None:
    """Guess the ``ApiFormat`` of a response body or SSE tail; ``None`` if unknown."""
    return _detect_events(_events(body))


def _detect_events(events: Iterable[Mapping[str, Any]]) -> int | None:
    for event in events:
        fmt = _detect_one(event)
        if fmt is not None:
            return fmt
    return None


def _detect_one(obj: Mapping[str, Any]) -> int | None:
    kind = str(obj.get("object", ""))
    typ = str(obj.get("type", ""))
    if kind.startswith("chat.completion") or "choices" in obj:
        return OPENAI_CHAT
    if kind == "response" or typ.startswith("response."):
        return OPENAI_RESPONSES
    if typ in {"message", "message_start", "message_delta", "message_stop"} or (
        typ.startswith("content_block")
    ):
        return ANTHROPIC
    if "candidates" in obj or "usageMetadata" in obj:
        return GEMINI
    return None


def _int(obj: Mapping[str, Any] | None, key: str) -> int:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _openai_chat(events: Iterable[Mapping[str, Any]]) -> types_pb2.TokenUsage | None:
    usage = None
    for event in events:
        if isinstance(event.get("usage"), Mapping):
            usage = event["usage"]
    if usage is None:
        return None
    cached = _int(usage.get("prompt_tokens_details"), "cached_tokens") or _int(
        usage, "prompt_cache_hit_tokens"
    )
    return types_pb2.TokenUsage(
        input_tokens=_int(usage, "prompt_tokens"),
        output_tokens=_int(usage, "completion_tokens"),
        cache_read_tokens=cached,
        reasoning_tokens=_int(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


def _openai_responses(events: Iterable[Mapping[str, Any]]) -> types_pb2.TokenUsage | None:
    usage = None
    for event in events:
        response = event.get("response") if "response" in event else event
        if isinstance(response, Mapping) and isinstance(response.get("usage"), Mapping):
            usage = response["usage"]
    if usage is None:
        return None
    return types_pb2.TokenUsage(
        input_tokens=_int(usage, "input_tokens"),
        output_tokens=_int(usage, "output_tokens"),
        cache_read_tokens=_int(usage.get("input_tokens_details"), "cached_tokens"),
        reasoning_tokens=_int(usage.get("output_tokens_details"), "reasoning_tokens"),
    )


def _anthropic(events: Iterable[Mapping[str, Any]]) -> types_pb2.TokenUsage | None:
    # Stream counts are cumulative: later events replace earlier ones key by key.
    merged: dict[str, int] = {}
    for event in events:
        message = event.get("message") if isinstance(event.get("message"), Mapping) else event
        usage = message.get("usage") if isinstance(message, Mapping) else None
        if not isinstance(usage, Mapping):
            usage = event.get("usage")
        if not isinstance(usage, Mapping):
            continue
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            if isinstance(usage.get(key), int):
                merged[key] = usage[key]
        one_hour = usage.get("cache_creation")
        if isinstance(one_hour, Mapping) and isinstance(
            one_hour.get("ephemeral_1h_input_tokens"), int
        ):
            merged["one_hour"] = one_hour["ephemeral_1h_input_tokens"]
    if "input_tokens" not in merged:
        return None
    read = merged.get("cache_read_input_tokens", 0)
    write = merged.get("cache_creation_input_tokens", 0)
    return types_pb2.TokenUsage(
        # Anthropic's input_tokens exclude cache reads and writes; ours include them.
        input_tokens=merged["input_tokens"] + read + write,
        output_tokens=merged.get("output_tokens", 0),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=merged.get("one_hour", 0),
    )


def _gemini(events: Iterable[Mapping[str, Any]]) -> types_pb2.TokenUsage | None:
    meta = None
    for event in events:
        if isinstance(event.get("usageMetadata"), Mapping):
            meta = event["usageMetadata"]
    if meta is None:
        return None
    thoughts = _int(meta, "thoughtsTokenCount")
    return types_pb2.TokenUsage(
        input_tokens=_int(meta, "promptTokenCount") + _int(meta, "toolUsePromptTokenCount"),
        output_tokens=_int(meta, "candidatesTokenCount") + thoughts,
        cache_read_tokens=_int(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


_READERS: dict[int, Callable[[Iterable[Mapping[str, Any]]], types_pb2.TokenUsage | None]] = {
    OPENAI_CHAT: _openai_chat,
    OPENAI_RESPONSES: _openai_responses,
    ANTHROPIC: _anthropic,
    GEMINI: _gemini,
}


def usage_from_response(
    body: bytes | str | Mapping[str, Any],
    response_format: int | str | None = None,
) -> types_pb2.TokenUsage | None:
    """The normalized usage of a provider response body or SSE tail, read locally.

    Supports OpenAI chat completions (and compatible APIs), OpenAI responses,
    Anthropic messages and Gemini generateContent, as whole bodies (bytes, str
    or an already parsed dict) or SSE tails. Returns ``None`` when the body
    carries no usage (e.g. a stream without ``stream_options.include_usage``)
    or its format is not known.

    This is a convenience: the service's own extraction of ``response_json``
    is authoritative and is what gets billed.
    """
    events = _events(body)
    fmt = _format_value(response_format) or _detect_events(events) or 0
    reader = _READERS.get(fmt)
    return reader(events) if reader is not None else None
