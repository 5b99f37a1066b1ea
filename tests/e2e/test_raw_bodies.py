"""Raw provider bodies over gRPC: EstimateTokens on request bodies, RecordUsage from responses."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import grpc
import pytest

from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.e2e.test_grpcurl import _grpcurl

T = 10

TOOLS_BODY: dict[str, Any] = {
    # pydantic/pydantic-ai tests/models/cassettes/test_openai/test_openai_tool_output.yaml:
    # OpenAI reported prompt_tokens 68 for this request (tests/data/token_corpus).
    "messages": [{"content": "What is the largest city in the user country?", "role": "user"}],
    "model": "gpt-4o",
    "stream": False,
    "tool_choice": "required",
    "tools": [
        {
            "function": {
                "description": "",
                "name": "get_user_country",
                "parameters": {"additionalProperties": False, "properties": {}, "type": "object"},
            },
            "type": "function",
        },
        {
            "function": {
                "description": "The final response which ends this conversation",
                "name": "final_result",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                    "required": ["city", "country"],
                    "type": "object",
                },
                "strict": True,
            },
            "type": "function",
        },
    ],
}


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def test_estimate_tokens_of_an_openai_chat_body_with_tools_over_grpcurl(verified: Live) -> None:
    body = {
        "model": "gpt-4o-mini",  # same o200k encoding as the recorded gpt-4o call; priced here
        "request_format": "API_FORMAT_UNSPECIFIED",
        "request_json": base64.b64encode(json.dumps(TOOLS_BODY).encode()).decode(),
        "max_output_tokens": 100,
    }
    done = subprocess.run(
        [
            _grpcurl(),
            "-plaintext",
            "-d",
            json.dumps(body),
            verified.server.target,
            "metering.v1.MeteringService/EstimateTokens",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["input_tokens"] == "68"
    assert response["method"] == "ESTIMATE_METHOD_EXACT"
    assert response["tokenizer"] == "o200k_base"
    assert response["request_format"] == "API_FORMAT_OPENAI_CHAT_COMPLETIONS"
    assert response["estimated_cost"] == {"currency_code": "USD", "nanos": 68 * 150}
    assert response["worst_case_cost"] == {"currency_code": "USD", "nanos": 68 * 150 + 100 * 600}


def test_estimate_rejects_malformed_bodies_naming_the_field(verified: Live) -> None:
    for bad in (b"{not json", b"[" * 100 + b"]" * 100, "\ud7ff".encode() + b"\xff"):
        with pytest.raises(grpc.RpcError) as caught:
            verified.metering.EstimateTokens(
                pb.EstimateTokensRequest(model="gpt-4o", request_json=bad), timeout=T
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _sse(*events: dict[str, Any], done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


CASES: list[tuple[str, str, bytes, dict[str, int], int]] = [
    (
        "openai-chat",
        "gpt-4o-mini",
        json.dumps(
            {
                "object": "chat.completion",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"message": {"role": "assistant", "content": "Hi"}}],
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 500,
                    "prompt_tokens_details": {"cached_tokens": 200},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            }
        ).encode(),
        {"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200},
        435_000,
    ),
    (
        "openai-chat-stream",
        "gpt-4o-mini",
        _sse(
            {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "Hi"}}]},
            {
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2},
            },
        ),
        {"input_tokens": 10, "output_tokens": 2},
        10 * 150 + 2 * 600,
    ),
    (
        "openai-responses",
        "gpt-4o-mini",
        json.dumps(
            {
                "object": "response",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}],
                "usage": {
                    "input_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 40},
                    "output_tokens": 50,
                    "output_tokens_details": {"reasoning_tokens": 20},
                },
            }
        ).encode(),
        {"input_tokens": 100, "cache_read_tokens": 40, "output_tokens": 50, "reasoning_tokens": 20},
        60 * 150 + 40 * 75 + 50 * 600,
    ),
    (
        "anthropic-message",
        "claude-sonnet-4-5",
        json.dumps(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Hello"}],
                "usage": {
                    "input_tokens": 100,
                    "cache_creation_input_tokens": 3000,
                    "cache_read_input_tokens": 5000,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 1000,
                        "ephemeral_1h_input_tokens": 2000,
                    },
                    "output_tokens": 200,
                },
            }
        ).encode(),
        {
            "input_tokens": 8100,
            "cache_read_tokens": 5000,
            "cache_write_tokens": 3000,
            "cache_write_1h_tokens": 2000,
            "output_tokens": 200,
        },
        # 100 x $3 + 5000 x $0.30 + 1000 x $3.75 + 2000 x $6 + 200 x $15, per million
        100 * 3000 + 5000 * 300 + 1000 * 3750 + 2000 * 6000 + 200 * 15000,
    ),
    (
        "anthropic-stream",
        "claude-sonnet-4-5",
        (
            b'event: message_start\ndata: {"type":"message_start","message":{"type":"message",'
            b'"usage":{"input_tokens":25,"cache_read_input_tokens":0,'
            b'"cache_creation_input_tokens":0,"output_tokens":1}}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
            b'"end_turn"},"usage":{"output_tokens":15}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        ),
        {"input_tokens": 25, "output_tokens": 15},
        25 * 3000 + 15 * 15000,
    ),
    (
        "gemini",
        "gemini-2.5-pro",
        json.dumps(
            {
                "candidates": [{"content": {"parts": [{"text": "Hi"}]}}],
                "usageMetadata": {
                    "promptTokenCount": 1000,
                    "cachedContentTokenCount": 400,
                    "candidatesTokenCount": 100,
                    "thoughtsTokenCount": 50,
                    "toolUsePromptTokenCount": 10,
                    "totalTokenCount": 1160,
                },
            }
        ).encode(),
        {
            "input_tokens": 1010,
            "cache_read_tokens": 400,
            "output_tokens": 150,
            "reasoning_tokens": 50,
        },
        610 * 1250 + 400 * 125 + 150 * 10000,
    ),
    (
        "workers-ai",
        "@cf/test/llama",
        json.dumps(
            {
                "result": {
                    "response": "Hi",
                    "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
                },
                "success": True,
            }
        ).encode(),
        {"input_tokens": 30, "output_tokens": 5},
        30 * 100 + 5 * 200,
    ),
    (
        "dify",
        "cheap-model",
        json.dumps(
            {
                "event": "message",
                "answer": "Hi",
                "metadata": {
                    "usage": {
                        "prompt_tokens": 13,
                        "completion_tokens": 0,
                        "total_tokens": 13,
                        "total_price": "0.0000065",
                    }
                },
            }
        ).encode(),
        {"input_tokens": 13},
        650,
    ),
]


@pytest.mark.parametrize(
    ("model", "body", "usage", "cost_nanos"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_record_usage_from_raw_provider_response(
    verified: Live, model: str, body: bytes, usage: dict[str, int], cost_nanos: int
) -> None:
    account = verified.new_account(units=1)
    request = pb.RecordUsageRequest(
        account_id=account, request_id="raw", model=model, response_json=body
    )
    response = verified.metering.RecordUsage(request, timeout=T)
    assert response.usage_source == types_pb2.USAGE_SOURCE_REPORTED
    assert response.usage == types_pb2.TokenUsage(**usage)
    assert _nanos(response.cost) == cost_nanos
    # Cost from the extracted usage equals cost from the same usage sent explicitly.
    explicit = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="explicit",
            model=model,
            usage=types_pb2.TokenUsage(**usage),
        ),
        timeout=T,
    )
    assert _nanos(explicit.cost) == cost_nanos
    assert verified.metering.RecordUsage(request, timeout=T).replayed


def test_zero_usage_with_a_completion_counts_as_missing(verified: Live) -> None:
    account = verified.new_account(units=1)
    body = json.dumps(
        {
            "object": "chat.completion",
            "choices": [{"message": {"role": "assistant", "content": "A long answer"}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
    ).encode()
    response = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account, request_id="zero", model="gpt-4o-mini", response_json=body
        ),
        timeout=T,
    )
    assert response.usage_source == types_pb2.USAGE_SOURCE_MISSING


def test_stream_without_usage_is_recorded_as_missing(verified: Live) -> None:
    account = verified.new_account(units=1)
    body = _sse({"object": "chat.completion.chunk", "choices": [{"delta": {"content": "Hi"}}]})
    response = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="cut",
            model="gpt-4o-mini",
            response_json=body,
            response_format=types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS,
        ),
        timeout=T,
    )
    assert response.usage_source == types_pb2.USAGE_SOURCE_MISSING


def test_undetectable_response_is_invalid_argument(verified: Live) -> None:
    account = verified.new_account(units=1)
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id="odd",
                model="gpt-4o-mini",
                response_json=b'{"hello": "world"}',
            ),
            timeout=T,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert verified.row_counts() == before
