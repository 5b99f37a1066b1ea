"""extract_usage: every provider's body and stream, normalized exactly; hostile input refused.

The fixtures follow the providers' public API references (field names, nesting,
event order); the numbers are chosen so that each normalization rule shows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.domain.errors import InvalidArgument, Violations
from metering.domain.extraction import (
    JSON_DEPTH_MAX,
    RAW_BODY_BYTES_MAX,
    Extracted,
    ResponseFormat,
    detect_format,
    extract_usage,
)
from metering.domain.usage import TOKENS_PER_RECORD_MAX, TokenUsage

MAX = TOKENS_PER_RECORD_MAX
F = ResponseFormat


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def sse(*events: dict[str, Any], named: bool = False, done: bool = False) -> bytes:
    """An SSE stream of JSON events; `named` adds `event: <type>` lines as Anthropic and
    the Responses API send them."""
    out = []
    for event in events:
        if named:
            out.append(f"event: {event['type']}\n")
        out.append(f"data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def refused(raw: bytes, fmt: ResponseFormat | None = None, field: str = "response_json") -> str:
    """The one description of the InvalidArgument extract_usage raises, asserting its field."""
    with pytest.raises(InvalidArgument) as caught:
        extract_usage(raw, fmt, field)
    assert [v.field for v in caught.value.violations] == [field] * len(caught.value.violations)
    return " | ".join(v.description for v in caught.value.violations)


# --- OpenAI chat completions ----------------------------------------------------------

OPENAI_CHAT = {
    "id": "chatcmpl-BLQmTJqkCZEVqQ9KNVKo8V1gqHZbh",
    "object": "chat.completion",
    "created": 1744460097,
    "model": "o4-mini-2025-04-16",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The capital of France is Paris.",
                "refusal": None,
                "annotations": [],
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 256,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": None,
}

OPENAI_CHAT_STREAM = b"""\
data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":1290,"completion_tokens":2,"total_tokens":1292,"prompt_tokens_details":{"cached_tokens":1152,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"""  # noqa: E501 (the providers' own single-line events)

DEEPSEEK_CHAT = {
    "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
    "object": "chat.completion",
    "created": 1705651092,
    "model": "deepseek-reasoner",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I help you today?",
                "reasoning_content": "The user greets me.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 16,
        "completion_tokens": 40,
        "total_tokens": 56,
        "prompt_cache_hit_tokens": 12,
        "prompt_cache_miss_tokens": 4,
        "completion_tokens_details": {"reasoning_tokens": 31},
    },
    "system_fingerprint": "fp_a1b2c3d4e5_prod0820",
}


def test_openai_chat_completion_with_cached_and_reasoning_tokens() -> None:
    got = extract_usage(body(OPENAI_CHAT))
    assert got == Extracted(
        usage=TokenUsage(
            input_tokens=2006, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=256
        ),
        format=F.OPENAI_CHAT_COMPLETIONS,
        model="o4-mini-2025-04-16",
        has_completion=True,
        streamed=False,
    )


def test_openai_chat_stream_takes_the_include_usage_chunk() -> None:
    got = extract_usage(OPENAI_CHAT_STREAM)
    assert got == Extracted(
        usage=TokenUsage(input_tokens=1290, output_tokens=2, cache_read_tokens=1152),
        format=F.OPENAI_CHAT_COMPLETIONS,
        model="gpt-4o-mini-2024-07-18",
        has_completion=True,
        streamed=True,
    )


def test_openai_chat_stream_without_include_usage_has_no_usage() -> None:
    without_usage = OPENAI_CHAT_STREAM.replace(b'"choices":[],"usage":{', b'"choices":[],"x":{')
    got = extract_usage(without_usage)
    assert got.usage is None
    assert got.has_completion
    assert got.format is F.OPENAI_CHAT_COMPLETIONS


def test_deepseek_cache_hits_are_cache_reads() -> None:
    got = extract_usage(body(DEEPSEEK_CHAT))
    assert got.usage == TokenUsage(
        input_tokens=16, output_tokens=40, cache_read_tokens=12, reasoning_tokens=31
    )
    assert got.model == "deepseek-reasoner"


def test_cached_tokens_win_over_deepseek_cache_hits() -> None:
    both = json.loads(json.dumps(DEEPSEEK_CHAT))
    both["usage"]["prompt_tokens_details"] = {"cached_tokens": 8}
    assert extract_usage(body(both)).usage == TokenUsage(
        input_tokens=16, output_tokens=40, cache_read_tokens=8, reasoning_tokens=31
    )


def test_openai_chat_tool_call_only_is_a_completion() -> None:
    call = {
        "object": "chat.completion",
        "model": "gpt-4.1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    got = extract_usage(body(call))
    assert got.usage == TokenUsage()
    assert got.has_completion  # all-zero usage beside output: the caller treats it as missing


# --- OpenAI Responses -----------------------------------------------------------------

OPENAI_RESPONSE = {
    "id": "resp_6876cf02e0bc8192b74af0fb64b715ff06fa2fcced15a5ac",
    "object": "response",
    "created_at": 1752616706,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "o4-mini-2025-04-16",
    "output": [
        {"id": "rs_6876cf030a748192a1efa44c4c9e1f6f", "type": "reasoning", "summary": []},
        {
            "id": "msg_6876cf054f58819284ecc1058131305506fa2fcced15a5ac",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [],
                    "logprobs": [],
                    "text": "Under a silver moon, a unicorn named Lumina dreamed of stars.",
                }
            ],
        },
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": "medium", "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 1880,
        "input_tokens_details": {"cached_tokens": 1792},
        "output_tokens": 478,
        "output_tokens_details": {"reasoning_tokens": 384},
        "total_tokens": 2358,
    },
    "user": None,
    "metadata": {},
}


def _responses_stream(usage: dict[str, Any]) -> bytes:
    created = {**OPENAI_RESPONSE, "status": "in_progress", "output": [], "usage": None}
    completed = dict(OPENAI_RESPONSE, usage=usage)
    message_id = "msg_6876cf054f58819284ecc1058131305506fa2fcced15a5ac"
    return sse(
        {"type": "response.created", "sequence_number": 0, "response": created},
        {"type": "response.in_progress", "sequence_number": 1, "response": created},
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 1,
            "item": {
                "id": message_id,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 3,
            "item_id": message_id,
            "output_index": 1,
            "content_index": 0,
            "delta": "Under a silver moon",
        },
        {"type": "response.completed", "sequence_number": 9, "response": completed},
        named=True,
    )


def test_openai_responses_body() -> None:
    got = extract_usage(body(OPENAI_RESPONSE))
    assert got == Extracted(
        usage=TokenUsage(
            input_tokens=1880, output_tokens=478, cache_read_tokens=1792, reasoning_tokens=384
        ),
        format=F.OPENAI_RESPONSES,
        model="o4-mini-2025-04-16",
        has_completion=True,
        streamed=False,
    )


def test_openai_responses_stream_takes_response_completed() -> None:
    got = extract_usage(_responses_stream(OPENAI_RESPONSE["usage"]))  # type: ignore[arg-type]
    assert got == Extracted(
        usage=TokenUsage(
            input_tokens=1880, output_tokens=478, cache_read_tokens=1792, reasoning_tokens=384
        ),
        format=F.OPENAI_RESPONSES,
        model="o4-mini-2025-04-16",
        has_completion=True,
        streamed=True,
    )


def test_openai_responses_completed_event_alone() -> None:
    # A short tail that holds only the last event.
    only = sse({"type": "response.completed", "sequence_number": 9, "response": OPENAI_RESPONSE})
    got = extract_usage(only)
    assert got.usage == TokenUsage(
        input_tokens=1880, output_tokens=478, cache_read_tokens=1792, reasoning_tokens=384
    )
    assert got.format is F.OPENAI_RESPONSES


def test_openai_responses_has_completion_from_deltas_only() -> None:
    empty_output = {**OPENAI_RESPONSE, "output": []}
    stream = sse(
        {
            "type": "response.output_text.delta",
            "sequence_number": 3,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hi",
        },
        {"type": "response.completed", "sequence_number": 4, "response": empty_output},
    )
    assert extract_usage(stream).has_completion
    assert not extract_usage(body(empty_output)).has_completion


# --- Anthropic messages ----------------------------------------------------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 1800,
        "cache_creation": {"ephemeral_5m_input_tokens": 512, "ephemeral_1h_input_tokens": 1536},
        "output_tokens": 393,
        "service_tier": "standard",
    },
}

ANTHROPIC_STREAM = b"""\
event: message_start
data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":1024,"cache_read_input_tokens":2048,"cache_creation":{"ephemeral_5m_input_tokens":1024,"ephemeral_1h_input_tokens":0},"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants a greeting."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""  # noqa: E501 (the providers' own single-line events)

ANTHROPIC_STREAM_USAGE = TokenUsage(
    input_tokens=472 + 1024 + 2048,
    output_tokens=89,
    cache_read_tokens=2048,
    cache_write_tokens=1024,
    cache_write_1h_tokens=0,
)


def test_anthropic_message_with_cache_split_and_reads() -> None:
    got = extract_usage(body(ANTHROPIC_MESSAGE))
    assert got == Extracted(
        usage=TokenUsage(
            input_tokens=21 + 2048 + 1800,  # Anthropic's input_tokens exclude the cache
            output_tokens=393,
            cache_read_tokens=1800,
            cache_write_tokens=2048,
            cache_write_1h_tokens=1536,
            reasoning_tokens=0,
        ),
        format=F.ANTHROPIC_MESSAGES,
        model="claude-sonnet-4-5-20250929",
        has_completion=True,
        streamed=False,
    )


def test_anthropic_stream_combines_message_start_and_message_delta() -> None:
    got = extract_usage(ANTHROPIC_STREAM)
    assert got == Extracted(
        usage=ANTHROPIC_STREAM_USAGE,
        format=F.ANTHROPIC_MESSAGES,
        model="claude-sonnet-4-5-20250929",
        has_completion=True,
        streamed=True,
    )


def test_anthropic_message_delta_with_cumulative_input_counts_overrides() -> None:
    # Newer API versions repeat every (cumulative) count in message_delta.
    stream = ANTHROPIC_STREAM.replace(
        b'"usage":{"output_tokens":89}',
        b'"usage":{"input_tokens":500,"cache_creation_input_tokens":1024,'
        b'"cache_read_input_tokens":2048,"output_tokens":89}',
    )
    got = extract_usage(stream)
    assert got.usage == TokenUsage(
        input_tokens=500 + 1024 + 2048,
        output_tokens=89,
        cache_read_tokens=2048,
        cache_write_tokens=1024,
    )


def test_anthropic_cache_creation_without_total_uses_the_sum() -> None:
    message = json.loads(json.dumps(ANTHROPIC_MESSAGE))
    del message["usage"]["cache_creation_input_tokens"]
    got = extract_usage(body(message))
    assert got.usage is not None
    assert got.usage.cache_write_tokens == 2048
    assert got.usage.cache_write_1h_tokens == 1536
    assert got.usage.input_tokens == 21 + 2048 + 1800


def test_anthropic_without_cache_fields() -> None:
    message = {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA"},
            }
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 384, "output_tokens": 58},
    }
    got = extract_usage(body(message))
    assert got.usage == TokenUsage(input_tokens=384, output_tokens=58)
    assert got.has_completion  # a tool call is output


def test_anthropic_tail_without_message_start_has_no_usage() -> None:
    # Only the output count survives in the tail: reporting input_tokens=0
    # would under-bill the prompt, so there is no usage at all.
    tail = ANTHROPIC_STREAM[ANTHROPIC_STREAM.index(b"event: content_block_delta") + 9 :]
    got = extract_usage(tail)
    assert got.usage is None
    assert got.format is F.ANTHROPIC_MESSAGES
    assert got.has_completion


# --- Gemini ------------------------------------------------------------------------------

GEMINI_RESPONSE = {
    "candidates": [
        {
            "content": {
                "parts": [{"text": "The forecast for Paris tomorrow is sunny, 24 C."}],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 4120,
        "candidatesTokenCount": 215,
        "totalTokenCount": 5437,
        "cachedContentTokenCount": 4096,
        "toolUsePromptTokenCount": 310,
        "thoughtsTokenCount": 792,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4120}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 4096}],
        "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 310}],
    },
    "modelVersion": "gemini-2.5-pro",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}

GEMINI_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Once"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "7GWtaO2nGvLgz7IPgNyGmQw"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " upon a time"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 4,'
    b'"totalTokenCount": 59,"thoughtsTokenCount": 47},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "7GWtaO2nGvLgz7IPgNyGmQw"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": ", a fox."}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,'
    b'"candidatesTokenCount": 12,"totalTokenCount": 67,"thoughtsTokenCount": 47,'
    b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}]},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "7GWtaO2nGvLgz7IPgNyGmQw"}\r\n\r\n'
)


def test_gemini_generate_content_with_cache_thoughts_and_tool_use() -> None:
    got = extract_usage(body(GEMINI_RESPONSE))
    assert got == Extracted(
        usage=TokenUsage(
            input_tokens=4120 + 310,
            output_tokens=215 + 792,  # thoughts are billed as output
            cache_read_tokens=4096,
            reasoning_tokens=792,
        ),
        format=F.GEMINI_GENERATE_CONTENT,
        model="gemini-2.5-pro",
        has_completion=True,
        streamed=False,
    )


def test_gemini_sse_stream_takes_the_last_usage_metadata() -> None:
    got = extract_usage(GEMINI_STREAM)
    assert got == Extracted(
        usage=TokenUsage(input_tokens=8, output_tokens=12 + 47, reasoning_tokens=47),
        format=F.GEMINI_GENERATE_CONTENT,
        model="gemini-2.5-flash",
        has_completion=True,
        streamed=True,
    )


def test_gemini_json_array_stream() -> None:
    # streamGenerateContent without alt=sse answers one JSON array of chunks.
    chunks = [json.loads(line[6:]) for line in GEMINI_STREAM.split(b"\r\n\r\n") if line]
    got = extract_usage(json.dumps(chunks, indent=2).encode())
    assert got.usage == TokenUsage(input_tokens=8, output_tokens=59, reasoning_tokens=47)
    assert got.streamed


def test_gemini_total_token_count_mismatch_is_not_an_error() -> None:
    response = json.loads(json.dumps(GEMINI_RESPONSE))
    response["usageMetadata"]["totalTokenCount"] = 1
    assert extract_usage(body(response)).usage == TokenUsage(
        input_tokens=4430, output_tokens=1007, cache_read_tokens=4096, reasoning_tokens=792
    )
    response["usageMetadata"]["totalTokenCount"] = "many"  # not used, so not judged
    assert extract_usage(body(response)).usage == TokenUsage(
        input_tokens=4430, output_tokens=1007, cache_read_tokens=4096, reasoning_tokens=792
    )


# --- Cloudflare Workers AI -----------------------------------------------------------

WORKERS_AI_RESPONSE = {
    "result": {
        "response": "Hello! It's nice to meet you. Is there something I can help you with?",
        "tool_calls": [],
        "usage": {"prompt_tokens": 27, "completion_tokens": 19, "total_tokens": 46},
    },
    "success": True,
    "errors": [],
    "messages": [],
}

WORKERS_AI_STREAM = b"""\
data: {"response":"Hello","p":"abdefghijklmnopqrstuvwxyz0123456789abdefghijklmnopqrstuvwxyz0"}

data: {"response":"!","p":"abdefghijklmnopqrstuvwxyz0123456"}

data: {"response":" How can I help?","p":"abdefghijklmn"}

data: {"response":"","usage":{"prompt_tokens":27,"completion_tokens":19,"total_tokens":46}}

data: [DONE]

"""


def test_workers_ai_rest_response() -> None:
    got = extract_usage(body(WORKERS_AI_RESPONSE))
    assert got == Extracted(
        usage=TokenUsage(input_tokens=27, output_tokens=19),
        format=F.WORKERS_AI,
        model="",
        has_completion=True,
        streamed=False,
    )


def test_workers_ai_stream() -> None:
    got = extract_usage(WORKERS_AI_STREAM)
    assert got == Extracted(
        usage=TokenUsage(input_tokens=27, output_tokens=19),
        format=F.WORKERS_AI,
        model="",
        has_completion=True,
        streamed=True,
    )


def test_workers_ai_openai_compatible_shapes() -> None:
    compatible = {
        "id": "id-1751234567890",
        "object": "chat.completion",
        "created": 1751234567,
        "model": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 40,
            "completion_tokens": 4,
            "total_tokens": 44,
            "prompt_tokens_details": {"cached_tokens": 32},
        },
    }
    expected = TokenUsage(input_tokens=40, output_tokens=4, cache_read_tokens=32)
    for raw in (body(compatible), body({"result": compatible, "success": True, "errors": []})):
        got = extract_usage(raw, F.WORKERS_AI)
        assert got.usage == expected
        assert got.model == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
        assert got.has_completion
    # Autodetected, the bare OpenAI shape is OpenAI chat, which reads the same.
    assert extract_usage(body(compatible)).format is F.OPENAI_CHAT_COMPLETIONS
    assert extract_usage(body({"result": compatible})).format is F.WORKERS_AI


# --- Dify --------------------------------------------------------------------------------

DIFY_USAGE = {
    "prompt_tokens": 1033,
    "prompt_unit_price": "0.001",
    "prompt_price_unit": "0.001",
    "prompt_price": "0.0010330",
    "completion_tokens": 128,
    "completion_unit_price": "0.002",
    "completion_price_unit": "0.001",
    "completion_price": "0.0002560",
    "total_tokens": 1161,
    "total_price": "0.0012890",
    "currency": "USD",
    "latency": 0.7682376249867957,
}

DIFY_BLOCKING = {
    "event": "message",
    "task_id": "c3800678-a077-43df-a102-53f23ed20b88",
    "id": "9da23599-e713-473b-982c-4328d4f5c78a",
    "message_id": "9da23599-e713-473b-982c-4328d4f5c78a",
    "conversation_id": "45701982-8118-4bc5-8e9b-64562b4555f2",
    "mode": "chat",
    "answer": "iPhone 13 Pro Max specs are listed here: ...",
    "metadata": {
        "usage": DIFY_USAGE,
        "retriever_resources": [
            {
                "position": 1,
                "dataset_id": "101b4c97-fc2e-463c-90b1-5261a4cdcafb",
                "dataset_name": "iPhone",
                "document_id": "8dd1ad74-0b5f-4175-b735-7d98bbbb4e00",
                "document_name": "iPhone List",
                "segment_id": "ed599c7f-2766-4294-9d1d-e5235a61270a",
                "score": 0.98457545,
                "content": '"Model","Release Date"',
            }
        ],
    },
    "created_at": 1705407629,
}

DIFY_STREAM = b"".join(
    b"data: " + body(event) + b"\n\n"
    for event in (
        {
            "event": "message",
            "task_id": "900bbd43-dc0b-4383-a372-aa6e6c414227",
            "message_id": "663c5084-a254-4040-8ad3-51f2a3c1a77c",
            "conversation_id": "c216ddd3-d1ae-4d3a-8d87-1a0b0fa1dbb6",
            "answer": "Hi",
            "created_at": 1705398420,
        },
        {
            "event": "message",
            "task_id": "900bbd43-dc0b-4383-a372-aa6e6c414227",
            "message_id": "663c5084-a254-4040-8ad3-51f2a3c1a77c",
            "conversation_id": "c216ddd3-d1ae-4d3a-8d87-1a0b0fa1dbb6",
            "answer": " there",
            "created_at": 1705398420,
        },
        {
            "event": "message_end",
            "task_id": "900bbd43-dc0b-4383-a372-aa6e6c414227",
            "id": "663c5084-a254-4040-8ad3-51f2a3c1a77c",
            "message_id": "663c5084-a254-4040-8ad3-51f2a3c1a77c",
            "conversation_id": "c216ddd3-d1ae-4d3a-8d87-1a0b0fa1dbb6",
            "metadata": {"usage": DIFY_USAGE, "retriever_resources": []},
        },
        {
            "event": "tts_message_end",
            "conversation_id": "23dd85f3-1a41-4ea0-b7a9-062734ccfaf9",
            "message_id": "a8bdc41c-13b2-4c18-bfd9-054b9803038c",
            "created_at": 1721205487,
            "task_id": "3bf8a0bb-e73b-4690-9e66-4e429bad8ee7",
            "audio": "",
        },
    )
)


def test_dify_blocking_response() -> None:
    got = extract_usage(body(DIFY_BLOCKING))
    assert got == Extracted(
        usage=TokenUsage(input_tokens=1033, output_tokens=128),
        format=F.DIFY,
        model="",
        has_completion=True,
        streamed=False,
    )


def test_dify_stream_message_end() -> None:
    got = extract_usage(DIFY_STREAM)
    assert got == Extracted(
        usage=TokenUsage(input_tokens=1033, output_tokens=128),
        format=F.DIFY,
        model="",
        has_completion=True,
        streamed=True,
    )


# --- autodetection ---------------------------------------------------------------------

FIXTURES = [
    (body(OPENAI_CHAT), F.OPENAI_CHAT_COMPLETIONS),
    (OPENAI_CHAT_STREAM, F.OPENAI_CHAT_COMPLETIONS),
    (body(DEEPSEEK_CHAT), F.OPENAI_CHAT_COMPLETIONS),
    (body(OPENAI_RESPONSE), F.OPENAI_RESPONSES),
    (_responses_stream(OPENAI_RESPONSE["usage"]), F.OPENAI_RESPONSES),  # type: ignore[arg-type]
    (body(ANTHROPIC_MESSAGE), F.ANTHROPIC_MESSAGES),
    (ANTHROPIC_STREAM, F.ANTHROPIC_MESSAGES),
    (body(GEMINI_RESPONSE), F.GEMINI_GENERATE_CONTENT),
    (GEMINI_STREAM, F.GEMINI_GENERATE_CONTENT),
    (body(WORKERS_AI_RESPONSE), F.WORKERS_AI),
    (WORKERS_AI_STREAM, F.WORKERS_AI),
    (body(DIFY_BLOCKING), F.DIFY),
    (DIFY_STREAM, F.DIFY),
]


@pytest.mark.parametrize(("raw", "fmt"), FIXTURES)
def test_autodetection_agrees_with_the_explicit_format(raw: bytes, fmt: ResponseFormat) -> None:
    detected = extract_usage(raw)
    assert detected.format is fmt
    assert detected == extract_usage(raw, fmt)
    assert detected.usage is not None


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        (OPENAI_CHAT, F.OPENAI_CHAT_COMPLETIONS),
        ({"object": "chat.completion.chunk", "choices": []}, F.OPENAI_CHAT_COMPLETIONS),
        ({"object": "text_completion", "choices": [{"text": "x"}]}, F.OPENAI_CHAT_COMPLETIONS),
        ({"choices": [{"message": {"content": "x"}}]}, F.OPENAI_CHAT_COMPLETIONS),
        (OPENAI_RESPONSE, F.OPENAI_RESPONSES),
        ({"type": "response.output_text.delta", "delta": "x"}, F.OPENAI_RESPONSES),
        (ANTHROPIC_MESSAGE, F.ANTHROPIC_MESSAGES),
        ({"type": "message_start", "message": {}}, F.ANTHROPIC_MESSAGES),
        ({"type": "message_delta", "usage": {"output_tokens": 1}}, F.ANTHROPIC_MESSAGES),
        ({"type": "content_block_delta", "delta": {}}, F.ANTHROPIC_MESSAGES),
        (GEMINI_RESPONSE, F.GEMINI_GENERATE_CONTENT),
        ({"usageMetadata": {"promptTokenCount": 1}}, F.GEMINI_GENERATE_CONTENT),
        ({"candidates": []}, F.GEMINI_GENERATE_CONTENT),
        ([{"x": 1}, GEMINI_RESPONSE], F.GEMINI_GENERATE_CONTENT),
        (WORKERS_AI_RESPONSE, F.WORKERS_AI),
        ({"response": "tok", "p": "abc"}, F.WORKERS_AI),
        ({"response": "", "usage": {"prompt_tokens": 1}}, F.WORKERS_AI),
        (DIFY_BLOCKING, F.DIFY),
        ({"event": "message_end", "metadata": {"usage": DIFY_USAGE}}, F.DIFY),
        ({"metadata": {"usage": DIFY_USAGE}}, F.DIFY),
        ({}, None),
        ({"usage": {"prompt_tokens": 1}}, None),
        ({"type": "ping"}, None),
        ({"type": "error", "error": {"type": "overloaded_error"}}, None),
        ({"object": [], "type": {}, "event": [1]}, None),  # unhashable markers
        ([], None),
        ([1, "x"], None),
        ("chat.completion", None),
        (None, None),
    ],
)
def test_detect_format(obj: object, fmt: ResponseFormat | None) -> None:
    assert detect_format(obj) is fmt


def test_sse_event_names_help_detection() -> None:
    # Events whose JSON lacks the type still detect by their SSE `event:` line.
    assert extract_usage(b'event: message_end\ndata: {"metadata": {}}\n\n').format is F.DIFY
    stream = b'event: message_delta\ndata: {"usage": {"output_tokens": 3}}\n\n'
    assert extract_usage(stream).format is F.ANTHROPIC_MESSAGES
    stream = b'event: response.completed\ndata: {"response": {"usage": {"input_tokens": 3}}}\n\n'
    got = extract_usage(stream)
    assert got.format is F.OPENAI_RESPONSES
    assert got.usage == TokenUsage(input_tokens=3)


def test_undetectable_format_names_the_field() -> None:
    description = refused(b'{"hello": "world"}')
    assert description == "could not detect the response format; set format"
    assert refused(b'data: {"a": 1}\n\n', field="raw_response").startswith("could not detect")
    assert refused(b"data: [DONE]\n\n").startswith("could not detect")


def test_an_explicit_format_with_nothing_of_it_has_no_usage() -> None:
    for fmt in F:
        got = extract_usage(b'{"hello": "world"}', fmt)
        assert got == Extracted(None, fmt, "", has_completion=False, streamed=False)
    assert extract_usage(b"data: [DONE]\n\n", F.OPENAI_CHAT_COMPLETIONS).usage is None


# --- stream tails and framing -------------------------------------------------------------


def test_tail_starting_mid_line_is_read() -> None:
    for cut in (1, 17, 100, OPENAI_CHAT_STREAM.index(b"data:", 10) - 3):
        got = extract_usage(OPENAI_CHAT_STREAM[cut:])
        assert got.usage == TokenUsage(input_tokens=1290, output_tokens=2, cache_read_tokens=1152)
        assert got.streamed


def test_tail_cut_inside_a_multibyte_character() -> None:
    stream = 'data: {"choices":[{"delta":{"content":"\u00e9\u6f22"}}]}\n\n'.encode()
    stream += OPENAI_CHAT_STREAM
    for cut in range(len('data: {"choices":[{"delta":{"content":"'), 50):
        got = extract_usage(stream[cut:])
        assert got.usage == TokenUsage(input_tokens=1290, output_tokens=2, cache_read_tokens=1152)


def test_tail_cut_before_the_usage_chunk_has_no_usage() -> None:
    head = OPENAI_CHAT_STREAM[40 : OPENAI_CHAT_STREAM.index(b'"choices":[]') - 20]
    got = extract_usage(head)
    assert got.usage is None
    assert got.has_completion


def test_every_tail_of_every_stream_is_extracted_or_refused() -> None:
    for raw, fmt in FIXTURES:
        for cut in range(0, len(raw), 7):
            try:
                got = extract_usage(raw[cut:], fmt)
            except InvalidArgument as exc:
                assert exc.violations[0].field == "response_json"
            else:
                assert got.format is fmt


def test_ndjson_and_crlf_and_comments() -> None:
    lines = [json.loads(line[6:]) for line in OPENAI_CHAT_STREAM.split(b"\n\n") if b"{" in line]
    ndjson = b"\n".join(body(line) for line in lines)
    assert extract_usage(ndjson).usage == TokenUsage(
        input_tokens=1290, output_tokens=2, cache_read_tokens=1152
    )
    framed = b": OPENROUTER PROCESSING\r\n\r\nid: 7\r\nretry: 100\r\n" + OPENAI_CHAT_STREAM.replace(
        b"\n", b"\r\n"
    )
    assert extract_usage(framed).usage == TokenUsage(
        input_tokens=1290, output_tokens=2, cache_read_tokens=1152
    )
    # no space after `data:`, and no blank lines between events
    tight = OPENAI_CHAT_STREAM.replace(b"data: ", b"data:").replace(b"\n\n", b"\n")
    assert extract_usage(tight).streamed


def test_json_body_with_bom_and_whitespace() -> None:
    raw = b"\xef\xbb\xbf\n  " + body(OPENAI_CHAT) + b"\n\n"
    assert extract_usage(raw).usage == extract_usage(body(OPENAI_CHAT)).usage


def test_model_is_empty_when_absent_or_not_a_string() -> None:
    chat = {"object": "chat.completion", "model": 5, "usage": {"prompt_tokens": 1}}
    assert extract_usage(body(chat)).model == ""


# --- errors ----------------------------------------------------------------------------------


def test_too_large() -> None:
    padded = body(OPENAI_CHAT)
    padded += b" " * (RAW_BODY_BYTES_MAX - len(padded))
    assert extract_usage(padded).usage is not None  # exactly the limit is accepted
    assert "at most 4194304" in refused(padded + b" ")


def test_not_utf8() -> None:
    assert "UTF-8" in refused(b'{"model": "\xff\xfe"}')
    assert "UTF-8" in refused(b'data: {"model": "caf\xc3"}\n\n', field="response_body")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b" \n\r\n\t",
        b"hello",
        b'{"unterminated": ',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"data: not json\n\n",
        b"event: message_start\n\n",
        b"42",
        b'"a string"',
        b"[1, 2, 3]",
        b"null",
    ],
)
def test_not_json(raw: bytes) -> None:
    refused(raw)


def test_json_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        # the object itself is level 1, then depth - 1 arrays
        arrays = b"[" * (depth - 1) + b"]" * (depth - 1)
        return b'{"object": "chat.completion", "usage": {"prompt_tokens": 1}, "x": ' + arrays + b"}"

    assert extract_usage(nested(JSON_DEPTH_MAX)).usage == TokenUsage(input_tokens=1)
    assert "deeper than 64" in refused(nested(JSON_DEPTH_MAX + 1))
    assert "deeper than 64" in refused(b"[" * 100_000 + b"]" * 100_000)
    assert "deeper than 64" in refused(b"[" * 100_000)
    assert "deeper than 64" in refused(b'{"a":' * 100_000)
    # brackets inside strings are not nesting
    flat = {"object": "chat.completion", "x": "[" * 1000, "usage": {"prompt_tokens": 1}}
    assert extract_usage(body(flat)).usage == TokenUsage(input_tokens=1)


def test_json_depth_limit_in_a_stream() -> None:
    deep = b"data: " + b'{"a":' * 200 + b"1" + b"}" * 200 + b"\n\n"
    assert "line 3" in refused(OPENAI_CHAT_STREAM[:50] + b"\n\n" + deep + OPENAI_CHAT_STREAM)
    # the first line of a tail may be a fragment; a deep one is skipped, unparsed
    assert extract_usage(deep + OPENAI_CHAT_STREAM).usage is not None
    assert "deeper than 64" in refused(deep)


def _chat(usage: object) -> bytes:
    return body({"object": "chat.completion", "model": "gpt-4o", "usage": usage})


@pytest.mark.parametrize(
    ("usage", "needle"),
    [
        ({"prompt_tokens": "12"}, "usage.prompt_tokens must be a non-negative integer, got a str"),
        ({"prompt_tokens": True}, "usage.prompt_tokens must be a non-negative integer, got a boo"),
        ({"prompt_tokens": 12.5}, "usage.prompt_tokens must be a non-negative integer, got a fra"),
        ({"prompt_tokens": [1]}, "got an array"),
        ({"prompt_tokens": -1}, "usage.prompt_tokens must not be negative"),
        ({"completion_tokens": MAX + 1}, f"usage.completion_tokens must be at most {MAX}"),
        ({"prompt_tokens": 1e300}, f"usage.prompt_tokens must be at most {MAX}"),
        (
            {"prompt_tokens": 1, "prompt_tokens_details": []},
            "usage.prompt_tokens_details must be a JSON object, got an array",
        ),
        (
            {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": -3}},
            "usage.prompt_tokens_details.cached_tokens must not be negative",
        ),
        (
            {"prompt_tokens": 1, "completion_tokens_details": {"reasoning_tokens": "x"}},
            "usage.completion_tokens_details.reasoning_tokens must be a non-negative integer",
        ),
        ("12 tokens", "usage must be a JSON object, got a string"),
        (
            {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}},
            "cache_read_tokens + cache_write_tokens must not exceed input_tokens",
        ),
        (
            {"completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 11}},
            "reasoning_tokens must not exceed output_tokens",
        ),
    ],
)
def test_malformed_or_inconsistent_openai_counts(usage: object, needle: str) -> None:
    assert needle in refused(_chat(usage))
    assert needle in refused(_chat(usage), field="raw_response")


def test_numbers_json_allows_but_python_does_not() -> None:
    # 1e400 parses to inf; 5000 digits exceed Python's integer parsing limit.
    assert "got a non-finite number" in refused(
        b'{"object": "chat.completion", "usage": {"prompt_tokens": 1e400}}'
    )
    huge = b'{"object": "chat.completion", "usage": {"prompt_tokens": ' + b"9" * 5000 + b"}}"
    assert "neither a JSON document" in refused(huge)


def test_integral_floats_and_nulls_are_counts() -> None:
    got = extract_usage(
        _chat(
            {
                "prompt_tokens": 12.0,
                "completion_tokens": 3,
                "prompt_tokens_details": None,
                "completion_tokens_details": {"reasoning_tokens": None},
            }
        )
    )
    assert got.usage == TokenUsage(input_tokens=12, output_tokens=3)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        extract_usage(_chat({"prompt_tokens": -1, "completion_tokens": "x"}))
    assert len(caught.value.violations) == 2


def test_stream_problems_name_the_line() -> None:
    stream = OPENAI_CHAT_STREAM.replace(b'"completion_tokens":2,', b'"completion_tokens":-2,')
    assert "usage.completion_tokens must not be negative (line 9)" in refused(stream)


@pytest.mark.parametrize(
    ("usage", "needle"),
    [
        (
            {
                "input_tokens": 1,
                "cache_creation_input_tokens": 100,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 50,
                    "ephemeral_1h_input_tokens": 60,
                },
            },
            "(50 + 60) must equal cache_creation_input_tokens (100)",
        ),
        (
            {"input_tokens": MAX, "cache_read_input_tokens": MAX},
            f"input_tokens must be at most {MAX}",
        ),
        ({"input_tokens": 1, "output_tokens": -5}, "usage.output_tokens must not be negative"),
        (
            {"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 1.5}},
            "usage.cache_creation.ephemeral_1h_input_tokens must be a non-negative integer",
        ),
        ({"input_tokens": 1, "cache_creation": 7}, "usage.cache_creation must be a JSON object"),
    ],
)
def test_malformed_or_inconsistent_anthropic_counts(usage: object, needle: str) -> None:
    message = {"type": "message", "model": "claude-opus-4-1", "content": [], "usage": usage}
    assert needle in refused(body(message))


def test_malformed_or_inconsistent_other_formats() -> None:
    gemini = {
        "candidates": [],
        "usageMetadata": {"promptTokenCount": 10, "cachedContentTokenCount": 20},
    }
    assert "must not exceed input_tokens" in refused(body(gemini))
    gemini = {"usageMetadata": {"promptTokenCount": "10"}}
    assert "usageMetadata.promptTokenCount must be a non-negative integer" in refused(body(gemini))
    gemini = {"usageMetadata": []}
    assert "usageMetadata must be a JSON object" in refused(body(gemini), F.GEMINI_GENERATE_CONTENT)
    responses = {"object": "response", "usage": {"input_tokens": 1, "input_tokens_details": 3}}
    assert "usage.input_tokens_details must be a JSON object" in refused(body(responses))
    responses = {"type": "response.completed", "response": "done"}
    assert "response must be a JSON object" in refused(body(responses))
    workers = {"result": {"response": "x", "usage": {"prompt_tokens": False}}}
    assert "result.usage.prompt_tokens must be a non-negative integer" in refused(body(workers))
    dify = {"event": "message_end", "metadata": {"usage": {"completion_tokens": -1}}}
    assert "metadata.usage.completion_tokens must not be negative" in refused(body(dify))
    dify = {"event": "message_end", "metadata": "none"}
    assert "metadata must be a JSON object" in refused(body(dify))


def test_not_bytes() -> None:
    assert "must be bytes" in refused("{}")  # type: ignore[arg-type]
    # A relay's buffer may be any bytes-like object; it is read, not refused.
    assert extract_usage(bytearray(body(OPENAI_CHAT))).usage is not None  # type: ignore[arg-type]


# --- round trips: known counts in each provider's shape come back exactly ---------------

counts = st.integers(min_value=0, max_value=MAX)


@st.composite
def prompt_and_completion(draw: st.DrawFn) -> TokenUsage:
    """Formats that report cache reads and reasoning: no cache writes."""
    input_tokens = draw(counts)
    output_tokens = draw(counts)
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=draw(st.integers(0, input_tokens)),
        reasoning_tokens=draw(st.integers(0, output_tokens)),
    )


@st.composite
def anthropic_counts(draw: st.DrawFn) -> TokenUsage:
    """Anthropic: cache reads and writes with the 1h split, no reasoning."""
    input_tokens = draw(counts)
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=draw(counts),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(0, cache_write)),
    )


plain_counts = st.builds(TokenUsage, input_tokens=counts, output_tokens=counts)


def openai_chat_usage(u: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0},
    }


def chat_chunk(**fields: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        **fields,
    }


@given(prompt_and_completion(), st.booleans())
def test_openai_chat_round_trip(u: TokenUsage, streamed: bool) -> None:
    if streamed:
        raw = sse(
            chat_chunk(choices=[{"index": 0, "delta": {"content": "Hi"}}], usage=None),
            chat_chunk(choices=[], usage=openai_chat_usage(u)),
            done=True,
        )
    else:
        raw = body(
            {
                "object": "chat.completion",
                "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
                "usage": openai_chat_usage(u),
            }
        )
    got = extract_usage(raw)
    assert (got.usage, got.format, got.streamed) == (u, F.OPENAI_CHAT_COMPLETIONS, streamed)


@given(prompt_and_completion())
def test_deepseek_round_trip(u: TokenUsage) -> None:
    raw = body(
        {
            "object": "chat.completion",
            "model": "deepseek-chat",
            "usage": {
                "prompt_tokens": u.input_tokens,
                "completion_tokens": u.output_tokens,
                "prompt_cache_hit_tokens": u.cache_read_tokens,
                "prompt_cache_miss_tokens": u.input_tokens - u.cache_read_tokens,
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            },
        }
    )
    assert extract_usage(raw).usage == u


@given(prompt_and_completion(), st.booleans())
def test_openai_responses_round_trip(u: TokenUsage, streamed: bool) -> None:
    usage = {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }
    raw = _responses_stream(usage) if streamed else body(dict(OPENAI_RESPONSE, usage=usage))
    got = extract_usage(raw)
    assert (got.usage, got.format, got.streamed) == (u, F.OPENAI_RESPONSES, streamed)


@given(anthropic_counts(), st.sampled_from(["message", "stream", "cumulative delta"]))
def test_anthropic_round_trip(u: TokenUsage, shape: str) -> None:
    usage = {
        "input_tokens": u.input_tokens - u.cache_read_tokens - u.cache_write_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        },
        "output_tokens": u.output_tokens,
    }
    if shape == "message":
        raw = body(dict(ANTHROPIC_MESSAGE, usage=usage))
    else:
        start = dict(ANTHROPIC_MESSAGE, content=[], usage=dict(usage, output_tokens=1))
        final: dict[str, object] = {"output_tokens": u.output_tokens}
        if shape == "cumulative delta":
            final = {k: v for k, v in usage.items() if k != "cache_creation"}
        raw = sse(
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": final},
            {"type": "message_stop"},
            named=True,
        )
    got = extract_usage(raw)
    assert (got.usage, got.format, got.has_completion) == (u, F.ANTHROPIC_MESSAGES, True)


@st.composite
def gemini_counts(draw: st.DrawFn) -> tuple[TokenUsage, int]:
    """Normalized counts and the part of the input that was tool-use prompt."""
    u = draw(prompt_and_completion())
    return u, draw(st.integers(0, u.input_tokens - u.cache_read_tokens))


@given(gemini_counts(), st.booleans(), st.booleans())
def test_gemini_round_trip(counted: tuple[TokenUsage, int], streamed: bool, omit: bool) -> None:
    u, tool_use = counted
    metadata = {
        "promptTokenCount": u.input_tokens - tool_use,
        "cachedContentTokenCount": u.cache_read_tokens,
        "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
        "thoughtsTokenCount": u.reasoning_tokens,
        "toolUsePromptTokenCount": tool_use,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if omit:  # proto3 JSON leaves zero counts out
        metadata = {k: v for k, v in metadata.items() if v}
    final = {
        "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "index": 0}],
        "usageMetadata": metadata,
        "modelVersion": "gemini-2.5-flash",
    }
    if streamed:
        first = dict(final, usageMetadata={"promptTokenCount": 1, "totalTokenCount": 1})
        raw = sse(first, final)
    else:
        raw = body(final)
    got = extract_usage(raw)
    assert (got.usage, got.format, got.streamed) == (u, F.GEMINI_GENERATE_CONTENT, streamed)


@given(plain_counts, st.sampled_from(["rest", "stream", "binding"]))
def test_workers_ai_round_trip(u: TokenUsage, shape: str) -> None:
    usage = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }
    if shape == "rest":
        raw = body({"result": {"response": "Hi", "usage": usage}, "success": True, "errors": []})
    elif shape == "stream":
        raw = sse({"response": "Hi", "p": "abc"}, {"response": "", "usage": usage}, done=True)
    else:
        raw = body({"response": "Hi", "usage": usage})
    got = extract_usage(raw)
    assert (got.usage, got.format, got.has_completion) == (u, F.WORKERS_AI, True)


@given(prompt_and_completion())
def test_workers_ai_openai_compatible_round_trip(u: TokenUsage) -> None:
    raw = body({"result": {"choices": [], "usage": openai_chat_usage(u)}, "success": True})
    assert extract_usage(raw, F.WORKERS_AI).usage == u


@given(plain_counts, st.booleans())
def test_dify_round_trip(u: TokenUsage, streamed: bool) -> None:
    usage = dict(
        DIFY_USAGE,
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.input_tokens + u.output_tokens,
    )
    if streamed:
        raw = sse(
            {"event": "message", "message_id": "m", "conversation_id": "c", "answer": "Hi"},
            {"event": "message_end", "message_id": "m", "metadata": {"usage": usage}},
        )
    else:
        raw = body(dict(DIFY_BLOCKING, metadata={"usage": usage}))
    got = extract_usage(raw)
    assert (got.usage, got.format, got.streamed) == (u, F.DIFY, streamed)


# --- fuzzing: hostile input yields Extracted or InvalidArgument, nothing else -----------

KEYS = [
    "object", "type", "event", "model", "modelVersion", "usage", "usageMetadata", "choices",
    "message", "delta", "content", "text", "thinking", "partial_json", "tool_calls", "refusal",
    "prompt_tokens", "completion_tokens", "prompt_tokens_details", "cached_tokens",
    "completion_tokens_details", "reasoning_tokens", "prompt_cache_hit_tokens", "input_tokens",
    "output_tokens", "input_tokens_details", "output_tokens_details",
    "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation",
    "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "content_block", "response",
    "output", "item", "output_text", "result", "metadata", "answer", "candidates", "parts",
    "functionCall", "promptTokenCount", "candidatesTokenCount", "cachedContentTokenCount",
    "thoughtsTokenCount", "toolUsePromptTokenCount", "totalTokenCount",
]  # fmt: skip
MARKERS = [
    "chat.completion", "chat.completion.chunk", "response", "response.completed",
    "response.output_text.delta", "message", "message_start", "message_delta",
    "content_block_start", "content_block_delta", "text_delta", "message_end", "output_text",
    "function_call", "tool_use",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 7, MAX, MAX + 1, -1])
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(MARKERS)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=40,
)
formats = st.sampled_from([None, *F])


def outcome(raw: bytes, fmt: ResponseFormat | None) -> Extracted | None:
    """Extract, allowing only InvalidArgument; a returned usage must be consistent."""
    try:
        got = extract_usage(raw, fmt)
    except InvalidArgument as exc:
        assert exc.violations
        assert all(v.field == "response_json" for v in exc.violations)
        return None
    assert isinstance(got, Extracted)
    assert fmt is None or got.format is fmt
    if got.usage is not None:
        violations = Violations()
        got.usage.check(violations)
        assert violations.items == []
    return got


@settings(max_examples=300)
@given(st.binary(max_size=300), formats)
def test_fuzz_random_bytes(raw: bytes, fmt: ResponseFormat | None) -> None:
    outcome(raw, fmt)


@settings(max_examples=400)
@given(json_values, formats)
def test_fuzz_random_json(value: object, fmt: ResponseFormat | None) -> None:
    outcome(json.dumps(value).encode(), fmt)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            json_values.map(lambda v: "data: " + json.dumps(v)),
            json_values.map(json.dumps),
            st.sampled_from(MARKERS).map(lambda m: "event: " + m),
            st.sampled_from(["", "data: [DONE]", ": comment", "id: 1", "data:", "retry: 5"]),
            st.text(max_size=20),
        ),
        max_size=8,
    ),
    st.integers(min_value=0, max_value=40),
    formats,
)
def test_fuzz_random_streams(lines: list[str], cut: int, fmt: ResponseFormat | None) -> None:
    raw = "\n".join(lines).encode()
    outcome(raw, fmt)
    outcome(raw[cut:], fmt)  # a tail cut anywhere, even inside a character


@settings(max_examples=200)
@given(st.sampled_from(FIXTURES), st.data())
def test_fuzz_mutated_fixtures(fixture: tuple[bytes, ResponseFormat], data: st.DataObject) -> None:
    raw, fmt = fixture
    position = data.draw(st.integers(0, len(raw) - 1))
    replacement = data.draw(st.binary(max_size=4))
    mutated = raw[:position] + replacement + raw[position + 1 :]
    outcome(mutated, data.draw(st.sampled_from([None, fmt])))


def test_hostile_shapes_of_known_formats() -> None:
    # Right markers, wrong everything else: each is read leniently where it only
    # decides has_completion, and refused where it carries counts.
    hostile: list[object] = [
        {"object": "chat.completion", "choices": "x", "usage": None},
        {"object": "chat.completion", "choices": [1, None, {"message": []}, {"delta": "x"}]},
        {"object": "chat.completion", "choices": [{"message": {"content": [1, {"text": 2}]}}]},
        {"object": "response", "output": [1, {"content": "x"}, {"content": [None]}]},
        {"type": "response.output_item.done", "item": {"type": "function_call"}},
        {"type": "message", "content": "x", "usage": {"input_tokens": 0}},
        {"type": "message_start", "message": []},
        {"type": "content_block_start", "content_block": []},
        {"type": "content_block_delta", "delta": "x"},
        {"candidates": [1, {"content": []}, {"content": {"parts": "x"}}]},
        {"result": [], "response": ["x"]},
        {"result": {"response": {}, "tool_calls": "x"}},
        {"event": "message", "answer": 5, "metadata": None},
    ]
    for value in hostile:
        for fmt in (None, *F):
            outcome(body(value), fmt)
