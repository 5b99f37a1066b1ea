"""usage_from_response (local) agrees with the service's own extraction (authoritative)."""

from __future__ import annotations

import json
import uuid

import pytest

from metering_client import (
    MeteringClient,
    TokenUsage,
    detect_format,
    record_request_from_response,
    usage_from_response,
)
from metering_client.v1 import types_pb2


def sse(*events: object, done: bool = True) -> str:
    out = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return out + ("data: [DONE]\n\n" if done else "")


def anthropic_sse(*events: dict[str, object]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


OPENAI_BODY = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
              "prompt_tokens_details": {"cached_tokens": 200},
              "completion_tokens_details": {"reasoning_tokens": 64}},
}  # fmt: skip
CHUNK = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
OPENAI_SSE = sse(
    {**CHUNK, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {**CHUNK, "choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 40}},
)
OPENAI_SSE_NO_USAGE = sse(
    {**CHUNK, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
)
RESPONSES_BODY = {
    "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4o-mini",
    "output": [{"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi"}]}],
    "usage": {"input_tokens": 900, "output_tokens": 100,
              "input_tokens_details": {"cached_tokens": 100},
              "output_tokens_details": {"reasoning_tokens": 10}},
}  # fmt: skip
ANTHROPIC_BODY = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 1000,
              "cache_creation_input_tokens": 500,
              "cache_creation": {"ephemeral_5m_input_tokens": 200,
                                 "ephemeral_1h_input_tokens": 300}},
}  # fmt: skip
ANTHROPIC_SSE = anthropic_sse(
    {"type": "message_start", "message": {
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "usage": {"input_tokens": 20, "output_tokens": 1,
                                 "cache_read_input_tokens": 30}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
     "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
)  # fmt: skip
GEMINI_BODY = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]},
                    "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 400, "cachedContentTokenCount": 100,
                      "candidatesTokenCount": 60, "thoughtsTokenCount": 40,
                      "totalTokenCount": 500},
    "modelVersion": "gemini-2.5-pro",
}  # fmt: skip
GEMINI_SSE = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "H"}]}}],
     "usageMetadata": {"promptTokenCount": 400}},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "i"}]},
                     "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 400, "candidatesTokenCount": 7,
                       "totalTokenCount": 407}},
    done=False,
)  # fmt: skip

CASES = {
    "openai-body": (json.dumps(OPENAI_BODY), "gpt-4o-mini",
                    TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=200,
                               reasoning_tokens=64)),
    "openai-sse": (OPENAI_SSE, "gpt-4o-mini", TokenUsage(input_tokens=300, output_tokens=40)),
    "responses-body": (json.dumps(RESPONSES_BODY), "gpt-4o-mini",
                       TokenUsage(input_tokens=900, output_tokens=100, cache_read_tokens=100,
                                  reasoning_tokens=10)),
    "anthropic-body": (json.dumps(ANTHROPIC_BODY), "claude-sonnet-4-5",
                       TokenUsage(input_tokens=1600, output_tokens=50, cache_read_tokens=1000,
                                  cache_write_tokens=500, cache_write_1h_tokens=300)),
    "anthropic-sse": (ANTHROPIC_SSE, "claude-sonnet-4-5",
                      TokenUsage(input_tokens=50, output_tokens=15, cache_read_tokens=30)),
    "gemini-body": (json.dumps(GEMINI_BODY), "gemini-2.5-pro",
                    TokenUsage(input_tokens=400, output_tokens=100, cache_read_tokens=100,
                               reasoning_tokens=40)),
    "gemini-sse": (GEMINI_SSE, "gemini-2.5-pro", TokenUsage(input_tokens=400, output_tokens=7)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_local_usage(name: str) -> None:
    body, _, expected = CASES[name]
    assert usage_from_response(body) == expected
    assert usage_from_response(body.encode()) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_local_helper_agrees_with_the_service(client: MeteringClient, name: str) -> None:
    body, model, expected = CASES[name]
    account = "resp-" + uuid.uuid4().hex[:10]
    client.create_account(account_id=account, allow_negative_balance=True)
    resp = client.record_usage(
        record_request_from_response(body, account_id=account, request_id="r", model=model)
    )
    assert resp.usage == expected == usage_from_response(body)


def test_parsed_dict_and_explicit_format() -> None:
    usage = usage_from_response(OPENAI_BODY, "OPENAI_CHAT_COMPLETIONS")
    assert usage is not None and usage.input_tokens == 1000
    assert usage_from_response(OPENAI_BODY, types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS)


def test_no_usage() -> None:
    assert usage_from_response(OPENAI_SSE_NO_USAGE) is None
    assert usage_from_response("not json at all") is None
    assert usage_from_response({"unknown": 1}) is None


def test_detect_format() -> None:
    assert detect_format(OPENAI_SSE) == types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS
    assert detect_format(ANTHROPIC_SSE) == types_pb2.API_FORMAT_ANTHROPIC_MESSAGES
    assert detect_format(json.dumps(GEMINI_BODY)) == types_pb2.API_FORMAT_GEMINI_GENERATE_CONTENT
    assert detect_format(RESPONSES_BODY) == types_pb2.API_FORMAT_OPENAI_RESPONSES
    assert detect_format("") is None


def test_record_request_from_response() -> None:
    req = record_request_from_response(
        OPENAI_SSE, account_id="a", request_id="r", model="m", streamed=True,
        response_format="API_FORMAT_OPENAI_CHAT_COMPLETIONS",
    )  # fmt: skip
    assert req.response_json == OPENAI_SSE.encode()
    assert req.response_format == types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS
    assert req.streamed and not req.HasField("usage")


def test_sse_tail_cut_mid_event() -> None:
    tail = OPENAI_SSE[25:]  # the first event is cut: skipped, the usage chunk is read
    assert usage_from_response(tail) == TokenUsage(input_tokens=300, output_tokens=40)
