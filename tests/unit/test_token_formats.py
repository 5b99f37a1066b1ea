"""Prompt tokens of raw provider request bodies (metering.tokens.formats)."""

from __future__ import annotations

import base64
import json
import socket
import struct
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public as openai_public
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.domain.errors import InvalidArgument
from metering.tokens import images, registry, vocab
from metering.tokens.formats import (
    JSON_DEPTH_MAX,
    REQUEST_BODY_BYTES_MAX,
    PromptCount,
    RequestFormat,
    count_request,
    detect_request_format,
)
from metering.tokens.openai_render import render_functions
from metering.tokens.registry import TokenizerFileError, TokenizerRegistry, TokenizerUnavailable
from metering.tokens.vocab import get_encoding

CORPUS = Path(__file__).resolve().parents[1] / "data" / "token_corpus"
CHAT = RequestFormat.OPENAI_CHAT_COMPLETIONS


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _o200k(text: str) -> int:
    return len(get_encoding("o200k_base").encode_ordinary(text))


def _cl100k(text: str) -> int:
    return len(get_encoding("cl100k_base").encode_ordinary(text))


def _chat(model: str, **fields: Any) -> int:
    return count_request(model, _body({"model": model, **fields}), CHAT).input_tokens


# --- the corpus: real requests with provider-reported counts ----------------------


def _corpus() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        cases.extend(data if isinstance(data, list) else [data])
    return cases


CASES = _corpus()
SUBSETS = {
    "plain_text",
    "tools",
    "structured_output",
    "images",
    "multi_turn_tools",
    "system_prompt",
    "responses_api",
}


def test_corpus_is_well_formed() -> None:
    assert len(CASES) >= 50
    assert len({case["id"] for case in CASES}) == len(CASES)
    providers = defaultdict(int)
    for case in CASES:
        assert case["subset"] in SUBSETS, case["id"]
        assert case["source"], case["id"]
        assert "repo" in case["source"] or "url" in case["source"], case["id"]
        assert isinstance(case["reported_prompt_tokens"], int)
        RequestFormat(case["format"])
        providers[case["provider"]] += 1
    assert providers["openai"] > len(CASES) / 2


def _measure() -> dict[tuple[str, str], tuple[int, float, float]]:
    """(provider, subset) -> (n, exact share, mean absolute relative error)."""
    groups: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for case in CASES:
        sizes = {url: (size[0], size[1]) for url, size in case.get("image_sizes", {}).items()}
        counted = count_request(
            case["model"], _body(case["request"]), RequestFormat(case["format"]), sizes or None
        )
        pair = (counted.input_tokens, case["reported_prompt_tokens"])
        groups[(case["provider"], case["subset"])].append(pair)
        groups[(case["provider"], "*")].append(pair)
    return {
        key: (
            len(pairs),
            sum(got == want for got, want in pairs) / len(pairs),
            sum(abs(got - want) / want for got, want in pairs) / len(pairs),
        )
        for key, pairs in groups.items()
    }


# The accuracy measured by bench/token_accuracy.py when this corpus was built:
# (minimum exact share, maximum mean absolute relative error). Anthropic and
# Gemini are in-sample: their constants were calibrated on these very cases.
THRESHOLDS = {
    ("openai", "plain_text"): (1.0, 0.0),
    ("openai", "system_prompt"): (1.0, 0.0),
    ("openai", "tools"): (0.96, 0.002),
    ("openai", "multi_turn_tools"): (1.0, 0.0),
    ("openai", "structured_output"): (1.0, 0.0),
    ("openai", "images"): (1.0, 0.0),
    ("openai", "responses_api"): (0.5, 0.65),
    ("openai", "*"): (0.97, 0.018),
    ("anthropic", "*"): (0.7, 0.004),
    ("google", "*"): (0.37, 0.027),
    ("google", "plain_text"): (1.0, 0.0),
}


def test_corpus_accuracy_stays_at_measured_level() -> None:
    measured = _measure()
    for key, (min_exact, max_error) in THRESHOLDS.items():
        n, exact, error = measured[key]
        assert exact >= min_exact, (key, n, exact)
        assert error <= max_error + 1e-9, (key, n, error)


# --- OpenAI chat framing, hand-verified ----------------------------------------


def test_single_user_message() -> None:
    # 3 per message + "user" (1) + "hello" (1) + 3 to prime the reply.
    assert _chat("gpt-4o", messages=[{"role": "user", "content": "hello"}]) == 8
    assert _chat("gpt-4", messages=[{"role": "user", "content": "hello world"}]) == 9


def test_name_adds_its_tokens_plus_one() -> None:
    base = _chat("gpt-4o", messages=[{"role": "user", "content": "hi"}])
    named = _chat("gpt-4o", messages=[{"role": "user", "content": "hi", "name": "example_user"}])
    assert named - base == _o200k("example_user") + 1


def test_reasoning_models_prime_with_two_tokens() -> None:
    messages = [{"role": "system", "content": "You are a potato."}]
    assert _chat("gpt-4o", messages=messages) == 3 + 1 + 5 + 3
    assert _chat("o3-mini", messages=messages) == 3 + 1 + 5 + 2


def test_text_parts_and_null_content() -> None:
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]
    assert _chat("gpt-4o", messages=[{"role": "user", "content": parts}]) == 3 + 1 + 2 + 3
    assert _chat("gpt-4o", messages=[{"role": "assistant", "content": None}]) == 3 + 1 + 3


WEATHER = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            },
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}


def test_function_rendering() -> None:
    assert render_functions([WEATHER]) == (
        "namespace functions {\n\n"
        "// Get the current weather in a given location\n"
        "type get_current_weather = (_: {\n"
        "// The city and state, e.g. San Francisco, CA\n"
        "location: string,\n"
        'unit?: "celsius" | "fahrenheit",\n'
        "}) => any;\n\n"
        "} // namespace functions"
    )
    assert render_functions(
        [{"name": "ping", "parameters": {"type": "object", "properties": {}}}]
    ) == ("namespace functions {\n\ntype ping = () => any;\n\n} // namespace functions")


def test_tools_add_their_rendering_plus_nine_or_five_with_a_system_message() -> None:
    user = [{"role": "user", "content": "hello"}]
    tools = [{"type": "function", "function": WEATHER}]
    rendering = _o200k(render_functions([WEATHER]))
    assert _chat("gpt-4o", messages=user, tools=tools) == 8 + rendering + 9
    system = [{"role": "system", "content": "Be brief."}, *user]
    plain = _chat("gpt-4o", messages=system)
    assert _chat("gpt-4o", messages=system, tools=tools) == plain + rendering + 5


def test_tool_choice() -> None:
    user = [{"role": "user", "content": "hello"}]
    tools = [{"type": "function", "function": WEATHER}]
    auto = _chat("gpt-4o", messages=user, tools=tools, tool_choice="auto")
    assert _chat("gpt-4o", messages=user, tools=tools) == auto
    assert _chat("gpt-4o", messages=user, tools=tools, tool_choice="none") == auto + 1
    assert _chat("gpt-4o", messages=user, tools=tools, tool_choice="required") == auto - 1
    named = {"type": "function", "function": {"name": "get_current_weather"}}
    assert _chat("gpt-4o", messages=user, tools=tools, tool_choice=named) == (
        auto + _o200k("get_current_weather") + 4
    )


def test_tool_call_and_result() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_capital", "arguments": '{"country":"France"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "Paris"}
    user = {"role": "user", "content": "What is the capital of France?"}
    base = _chat("gpt-4o-mini", messages=[user])
    both = _chat("gpt-4o-mini", messages=[user, call, result])
    # assistant: 3 + 1 + name + arguments + 3; tool: 3 + 1 + content + 5.
    expected = (4 + _o200k("get_capital") + _o200k('{"country":"France"}') + 3) + (4 + 1 + 5)
    assert both - base == expected


def test_response_format_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    user = [{"role": "user", "content": "hi"}]
    rf = {"type": "json_schema", "json_schema": {"name": "City", "schema": schema, "strict": True}}
    plain = _chat("gpt-4o", messages=user)
    with_rf = _chat("gpt-4o", messages=user, response_format=rf)
    rendered = (
        '# Response Formats\n\n## City\n\n{"type":"object","properties":{"city":{"type":"string"}}}'
    )
    assert with_rf - plain == _o200k(rendered)


def test_responses_api_body() -> None:
    body = {
        "model": "gpt-4.1-mini",
        "input": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Get the weather for a location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            }
        ],
        "tool_choice": "required",
        "max_output_tokens": 500,
    }
    counted = count_request("gpt-4.1-mini", _body(body))
    assert counted == PromptCount(51, True, "o200k_base", RequestFormat.OPENAI_RESPONSES, 500)
    simple = count_request("gpt-4o", _body({"model": "gpt-4o", "input": "hello"}))
    assert simple.input_tokens == 3 + 1 + 1 + 3


def test_encodings_per_family() -> None:
    body = _body({"messages": [{"role": "user", "content": "hello"}]})
    assert count_request("gpt-4o", body).tokenizer == "o200k_base"
    assert count_request("gpt-5-mini", body).tokenizer == "o200k_base"
    assert count_request("o4-mini", body).tokenizer == "o200k_base"
    assert count_request("gpt-4-turbo", body).tokenizer == "cl100k_base"
    assert count_request("gpt-3.5-turbo", body).tokenizer == "cl100k_base"
    assert count_request("gpt-oss-120b", body).tokenizer == "o200k_harmony"
    other = count_request("llama-3.3-70b", body)
    assert (other.exact, other.tokenizer) == (False, "approx-chars-per-token")


def test_harmony_encoding_matches_tiktoken_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    base = get_encoding("o200k_base")
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: base._mergeable_ranks)
    definition = openai_public.ENCODING_CONSTRUCTORS["o200k_harmony"]()
    harmony = get_encoding("o200k_harmony")
    assert harmony.name == definition["name"]
    assert harmony._pat_str == definition["pat_str"]
    assert harmony._special_tokens == definition["special_tokens"]
    assert harmony.encode("<|start|>user<|message|>hi<|end|>", allowed_special="all") == [
        200006,
        1428,
        200008,
        3686,
        200007,
    ]


def test_max_output_tokens_per_format() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert (
        count_request("gpt-4o", _body({"messages": msgs, "max_tokens": 7})).max_output_tokens == 7
    )
    chat = _body({"messages": msgs, "max_tokens": 7, "max_completion_tokens": 9})
    assert count_request("gpt-4o", chat).max_output_tokens == 9
    assert count_request("gpt-4o", _body({"messages": msgs})).max_output_tokens is None
    claude = _body({"model": "claude-sonnet-4-5", "messages": msgs, "max_tokens": 100})
    assert count_request("claude-sonnet-4-5", claude).max_output_tokens == 100
    gemini = _body(
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 64}}
    )
    assert count_request("gemini-2.5-pro", gemini).max_output_tokens == 64


def test_detect_request_format() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert detect_request_format({"messages": msgs}) is RequestFormat.OPENAI_CHAT_COMPLETIONS
    assert detect_request_format({"input": "x"}) is RequestFormat.OPENAI_RESPONSES
    assert detect_request_format({"instructions": "x"}) is RequestFormat.OPENAI_RESPONSES
    assert detect_request_format({"model": "claude-3-5-haiku", "messages": msgs}) is (
        RequestFormat.ANTHROPIC_MESSAGES
    )
    assert (
        detect_request_format({"system": "s", "messages": msgs}) is RequestFormat.ANTHROPIC_MESSAGES
    )
    tool_use = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        }
    ]
    assert detect_request_format({"messages": tool_use}) is RequestFormat.ANTHROPIC_MESSAGES
    assert detect_request_format({"contents": []}) is RequestFormat.GEMINI_GENERATE_CONTENT
    assert detect_request_format({"prompt": "x"}) is None
    assert detect_request_format([1, 2]) is None


# --- Anthropic and Gemini (approximate) -----------------------------------------


def test_anthropic_is_approximate_and_adds_the_tool_prompt() -> None:
    msgs = [{"role": "user", "content": "What's the weather like in San Francisco?"}]
    plain = count_request(
        "claude-sonnet-4-5", _body({"model": "claude-sonnet-4-5", "messages": msgs})
    )
    assert (plain.exact, plain.format) == (False, RequestFormat.ANTHROPIC_MESSAGES)
    tool = {"name": "f", "description": "", "input_schema": {"type": "object", "properties": {}}}
    body = {"model": "claude-sonnet-4-5", "messages": msgs, "tools": [tool]}
    with_tools = count_request("claude-sonnet-4-5", _body(body))
    assert with_tools.input_tokens - plain.input_tokens > 346
    opus3 = count_request("claude-3-opus-20240229", _body({**body, "model": "claude-3-opus"}))
    assert opus3.input_tokens - with_tools.input_tokens == 530 - 346


def test_gemini_counts_text_parts() -> None:
    body = {"contents": [{"parts": [{"text": "The quick brown fox jumps over the lazy dog."}]}]}
    counted = count_request("gemini-2.0-flash", _body(body))
    assert (counted.input_tokens, counted.exact) == (10, False)
    assert counted.format is RequestFormat.GEMINI_GENERATE_CONTENT


# --- images ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "detail", "tokens"),
    [
        ("gpt-4o", (512, 512), "high", 85 + 170),
        ("gpt-4o", (511, 511), "auto", 85 + 170),
        ("gpt-4o", (512, 513), "high", 85 + 170 * 2),
        ("gpt-4o", (1024, 1024), "high", 85 + 170 * 4),  # 768x768 after scaling
        ("gpt-4o", (2048, 1025), "high", 85 + 170 * 6),  # 1535x768: 3x2 tiles
        ("gpt-4o", (3600, 300), "high", 85 + 170 * 4),  # 2048x170: 4x1 tiles
        ("gpt-4o", (4096, 8192), "high", 85 + 170 * 6),  # 1024x2048 -> 768x1536
        ("gpt-4o", (4096, 8192), "low", 85),
        ("gpt-4o-mini", (800, 800), "auto", 2833 + 5667 * 4),
        ("gpt-4o-mini", (10, 10), "low", 2833),
        ("gpt-4.1", (512, 512), "high", 255),
        ("o1", (512, 512), "high", 75 + 150),
        ("o3", (1024, 1024), "high", 75 + 150 * 4),
        ("gpt-5", (512, 512), "high", 70 + 140),
        ("gpt-4.1-mini", (1024, 1024), "high", 1659),  # 1024 patches x 1.62
        ("gpt-4.1-nano", (64, 64), "high", 10),  # 4 patches x 2.46
        ("o4-mini", (1024, 1024), "high", 1762),  # 1024 patches x 1.72
        ("gpt-4.1-mini", (4096, 4096), "high", 2465),  # 1521 patches x 1.62, rounded up
    ],
)
def test_openai_image_formula(model: str, size: tuple[int, int], detail: str, tokens: int) -> None:
    assert images.openai_image_tokens(model, size[0], size[1], detail) == tokens


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def _webp_vp8x(width: int, height: int) -> bytes:
    payload = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"WEBPVP8X"
        + struct.pack("<I", 10)
        + payload
    )


def _webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little")
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"WEBPVP8L"
        + struct.pack("<I", 5)
        + payload
    )


@pytest.mark.parametrize("make", [_png, _jpeg, _gif, _webp_vp8x, _webp_vp8l])
def test_image_headers(make: Any) -> None:
    assert images.sniff_image_size(make(2048, 1025)) == (2048, 1025)


def test_image_sizes_in_requests() -> None:
    def request(url: str, detail: str = "high") -> bytes:
        content = [{"type": "image_url", "image_url": {"url": url, "detail": detail}}]
        return _body({"messages": [{"role": "user", "content": content}]})

    frame = 3 + 1 + 3
    data_url = "data:image/png;base64," + base64.b64encode(_png(2048, 1025)).decode()
    assert count_request("gpt-4o", request(data_url)).input_tokens == frame + 85 + 170 * 6
    url = "https://example.invalid/cat.png"
    # Unknown size: documented fallback of a 1024x1024 image at high detail.
    assert count_request("gpt-4o", request(url)).input_tokens == frame + 85 + 170 * 4
    told = count_request("gpt-4o", request(url), image_sizes={url: (512, 512)})
    assert told.input_tokens == frame + 85 + 170
    broken = "data:image/png;base64,@@@not-base64"
    assert count_request("gpt-4o", request(broken, "low")).input_tokens == frame + 85


# --- registry ----------------------------------------------------------------------


def _write_tiktoken_file(path: Path) -> dict[bytes, int]:
    ranks = {bytes([i]): i for i in range(256)}
    for merge in (b"he", b"ll", b"hell", b"hello", b" w", b"or", b" wor", b"ld", b" world"):
        ranks[merge] = len(ranks)
    path.write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items())
    )
    return ranks


def test_registry_tiktoken_file(tmp_path: Path) -> None:
    ranks = _write_tiktoken_file(tmp_path / "tiny.tiktoken")
    reg = TokenizerRegistry()
    tokenizer = reg.register("tiny-*", tmp_path / "tiny.tiktoken", name="tiny")
    expected = tiktoken.Encoding(
        name="check", pat_str=vocab.CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )
    assert tokenizer.count("hello world") == len(expected.encode_ordinary("hello world")) == 2
    assert reg.lookup("TINY-7B") is tokenizer
    assert reg.lookup("other") is None
    body = _body({"messages": [{"role": "user", "content": "hello world"}]})
    counted = count_request("tiny-7b", body, registry=reg)
    assert (counted.input_tokens, counted.exact, counted.tokenizer) == (
        3 + tokenizer.count("user") + 2 + 3,
        False,
        "tiny",
    )
    # Other models still use the built-in rules.
    assert count_request("gpt-4o", body, registry=reg).tokenizer == "o200k_base"


def test_registry_custom_pattern(tmp_path: Path) -> None:
    _write_tiktoken_file(tmp_path / "tiny.tiktoken")
    tokenizer = TokenizerRegistry().register("x", tmp_path / "tiny.tiktoken", pat_str=r"\S+|\s+")
    # "hello" (one merge chain), " ", and "world" without its leading space: w + or + ld.
    assert tokenizer.count("hello world") == 5


@pytest.mark.parametrize(
    "content",
    ["", "not base64 line\n", "aGk= notanumber\n", "aGk= 1\naGk= 2\n", "aGk= 1 extra\n"],
)
def test_registry_rejects_bad_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.tiktoken"
    path.write_text(content)
    with pytest.raises(TokenizerFileError, match=r"bad\.tiktoken"):
        TokenizerRegistry().register("m*", path)


def test_registry_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerFileError, match="missing"):
        TokenizerRegistry().register("m*", tmp_path / "missing.tiktoken")


def test_registry_huggingface_needs_tokenizers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    real_import = registry.importlib.import_module

    def no_tokenizers(name: str, package: str | None = None) -> Any:
        if name == "tokenizers":
            raise ImportError("No module named 'tokenizers'")
        return real_import(name, package)

    monkeypatch.setattr(registry.importlib, "import_module", no_tokenizers)
    with pytest.raises(TokenizerUnavailable, match="tokenizers"):
        TokenizerRegistry().register("m*", path)


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"x" * (REQUEST_BODY_BYTES_MAX + 1), "more than"),
        (b'{"messages": "\xff"}', "UTF-8"),
        (b'{"messages": [', "not valid JSON"),
        (b'{"messages": NaN}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper"),
        (b'{"a":' * (JSON_DEPTH_MAX + 1) + b"1" + b"}" * (JSON_DEPTH_MAX + 1), "deeper"),
        (b"[]", "object"),
        (b'{"prompt": "hi"}', "unknown request format"),
        (b'{"messages": "hi"}', "messages must be an array"),
        (b'{"messages": ["hi"]}', "messages[0] must be an object"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content must be an array"),
        (b'{"messages": [{"role": 1, "content": "x"}]}', "messages[0].role must be a string"),
        (b'{"messages": [], "max_tokens": -1}', "max_tokens"),
        (b'{"messages": [], "max_tokens": "9"}', "max_tokens"),
        (b'{"messages": [], "tools": {}}', "tools must be an array"),
        (b'{"contents": [{"parts": [{"text": 3}]}]}', "text must be a string"),
        (b'{"model": "claude-3", "messages": [{"role": "user", "content": 1}]}', "content"),
    ],
)
def test_invalid_bodies_name_the_field(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        count_request("gpt-4o", body)
    (violation,) = caught.value.violations
    assert violation.field == "request_json"
    assert fragment in violation.description


def test_depth_limit_is_inclusive() -> None:
    nested: object = "x"
    for _ in range(JSON_DEPTH_MAX - 3):  # the body, messages, the message add three levels
        nested = [nested]
    body = {"messages": [{"role": "user", "content": "hi", "metadata": nested}]}
    assert count_request("gpt-4o", _body(body)).input_tokens == 3 + 1 + 1 + 3


# --- hostile input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        " " * 1_000_000,
        "\t" * 900_000,
        "\u00a0" * 800_000,
        "a" * 2_000_000,
        "\U0001f600" * 200_000,
        "\ud800 lone surrogate",
        "<|endoftext|><|im_start|>",
        "e" + "\u0301" * 100_000,
    ],
)
@pytest.mark.parametrize("fmt", list(RequestFormat))
def test_hostile_text_never_raises(text: str, fmt: RequestFormat) -> None:
    if fmt is RequestFormat.GEMINI_GENERATE_CONTENT:
        obj: dict[str, Any] = {"contents": [{"parts": [{"text": text}]}]}
    elif fmt is RequestFormat.OPENAI_RESPONSES:
        obj = {"input": text}
    else:
        obj = {"messages": [{"role": "user", "content": text}]}
    try:
        body = json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # lone surrogates travel as JSON escapes
        body = json.dumps(obj).encode()
    for model in ("gpt-4o", "gpt-4", "claude-sonnet-4-5", "gemini-2.5-pro"):
        assert count_request(model, body, fmt).input_tokens > 0


def test_long_whitespace_runs_are_close_to_exact() -> None:
    text = "x " + " " * 300_000 + "y"
    body = _body({"messages": [{"role": "user", "content": text}]})
    counted = count_request("gpt-4", body).input_tokens
    assert abs(counted - (3 + 1 + _cl100k(text) + 3)) <= 8


_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["messages", "input", "instructions", "contents", "system", "tools", "tool_choice", "role",
     "content", "type", "text", "parts", "image_url", "url", "function", "name", "arguments",
     "tool_calls", "response_format", "json_schema", "schema", "functionDeclarations",
     "max_tokens", "generationConfig", "source", "data", "input_schema", "detail"]
)  # fmt: skip
_shaped = st.recursive(
    _json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_fuzz_arbitrary_bodies(body: bytes) -> None:
    for model in ("gpt-4o", "claude-sonnet-4-5"):
        try:
            result = count_request(model, body)
        except InvalidArgument as exc:
            assert exc.violations[0].field == "request_json"
        else:
            assert result.input_tokens >= 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.dictionaries(_keys, _shaped, max_size=6), fmt=st.sampled_from([None, *RequestFormat]))
def test_fuzz_shaped_requests(obj: dict[str, Any], fmt: RequestFormat | None) -> None:
    body = json.dumps(obj).encode()
    for model in ("gpt-4o", "o3", "gpt-4.1-mini", "claude-3-opus", "gemini-2.0-flash", "x"):
        try:
            result = count_request(model, body, fmt)
        except InvalidArgument as exc:
            assert exc.violations[0].field == "request_json"
        else:
            assert result.input_tokens >= 0


# --- never the network --------------------------------------------------------------


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("token counting must not download or open connections")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiktoken.load, "read_file", _no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", _no_network)
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", _no_network)
    monkeypatch.setattr(tiktoken.registry, "get_encoding", _no_network)
    monkeypatch.setattr(tiktoken, "get_encoding", _no_network)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    monkeypatch.setattr(vocab, "_encodings", {})


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("model", "body", "encodings"),
    [
        ("gpt-4o", {"messages": [{"role": "user", "content": "hi"}]}, {"o200k_base"}),
        ("gpt-4", {"input": "hi"}, {"cl100k_base"}),
        (
            "gpt-oss-20b",
            {"messages": [{"role": "user", "content": "hi"}]},
            {"o200k_base", "o200k_harmony"},
        ),
        (
            "claude-sonnet-4-5",
            {"system": "s", "messages": [{"role": "user", "content": "hi"}]},
            {"o200k_base"},
        ),
        ("gemini-2.5-pro", {"contents": [{"parts": [{"text": "hi"}]}]}, {"o200k_base"}),
        ("mistral-large", {"messages": [{"role": "user", "content": "hi"}]}, set()),
    ],
)
def test_counting_requests_never_touches_the_network(
    model: str, body: dict[str, Any], encodings: set[str]
) -> None:
    assert count_request(model, _body(body)).input_tokens > 0
    assert set(vocab._encodings) == encodings
