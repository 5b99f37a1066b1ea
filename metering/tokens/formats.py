"""Prompt tokens of a raw provider request body, before the call.

``count_request(model, body)`` parses an OpenAI Chat Completions, OpenAI
Responses, Anthropic Messages or Gemini generateContent body and counts the
tokens the provider will bill as input:

* OpenAI models (exact): the model's tiktoken encoding (o200k_base,
  cl100k_base, o200k_harmony for gpt-oss) plus the chat framing: 3 tokens per
  message plus its role, 1 more for a ``name``, 3 to prime the reply (2 for the
  o-series reasoning models), the function definitions rendered as a
  TypeScript namespace (``openai_render``), tool calls and tool results,
  ``response_format``/``text.format`` schemas, and images by the published
  tile/patch formulas (``images``).
* Anthropic and Gemini (approximate): their tokenizers are not public, so the
  text is counted with o200k_base and scaled by a factor calibrated on
  provider-reported counts (tests/data/token_corpus, bench/token_accuracy.py),
  plus fixed overheads per request, message and tool, and Anthropic's
  documented tool-use system prompt.
* Other models: a tokenizer registered for the model's name
  (``registry.TokenizerRegistry``), else about four characters per token, with
  the framing of the request's format.

Any problem with the body raises ``InvalidArgument`` naming ``request_json``;
no other exception escapes on hostile input.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from metering.domain.errors import FieldViolation, InvalidArgument
from metering.tokens import images
from metering.tokens.counter import encoding_name_for
from metering.tokens.openai_render import compact_json, render_functions
from metering.tokens.registry import DEFAULT_REGISTRY, TokenizerRegistry
from metering.tokens.textcount import ApproxTokenizer, TextTokenizer, TiktokenTokenizer
from metering.tokens.vocab import get_encoding

REQUEST_BODY_BYTES_MAX = 4 * 1024 * 1024
JSON_DEPTH_MAX = 64
FIELD = "request_json"


class RequestFormat(enum.Enum):
    OPENAI_CHAT_COMPLETIONS = "openai_chat_completions"
    OPENAI_RESPONSES = "openai_responses"
    ANTHROPIC_MESSAGES = "anthropic_messages"
    GEMINI_GENERATE_CONTENT = "gemini_generate_content"


@dataclass(frozen=True)
class PromptCount:
    input_tokens: int
    exact: bool
    tokenizer: str
    format: RequestFormat
    max_output_tokens: int | None


class _Invalid(Exception):
    """A problem with the request body; becomes InvalidArgument at the boundary."""


def _fail(description: str) -> NoReturn:
    raise _Invalid(description)


# --- public API ------------------------------------------------------------------


def count_request(
    model: str,
    body: bytes,
    fmt: RequestFormat | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    *,
    registry: TokenizerRegistry | None = None,
) -> PromptCount:
    """Input tokens of ``body`` (a provider request) for ``model``."""
    try:
        obj = parse_request(body)
        if fmt is None:
            fmt = detect_request_format(obj)
            if fmt is None:
                _fail(
                    "unknown request format: expected an OpenAI chat/responses, Anthropic "
                    "messages or Gemini generateContent body"
                )
        counter = _Counter(model, fmt, image_sizes, registry or DEFAULT_REGISTRY)
        tokens = counter.count(obj)
        return PromptCount(
            input_tokens=tokens,
            exact=counter.exact,
            tokenizer=counter.tokenizer_name,
            format=fmt,
            max_output_tokens=max_output_tokens(obj, fmt),
        )
    except _Invalid as exc:
        raise InvalidArgument([FieldViolation(FIELD, str(exc))]) from None
    except RecursionError:
        raise InvalidArgument(
            [FieldViolation(FIELD, f"request JSON nests deeper than {JSON_DEPTH_MAX} levels")]
        ) from None


def parse_request(body: bytes) -> dict[str, Any]:
    """The JSON object of ``body``; raises ``_Invalid`` on any problem."""
    if not isinstance(body, bytes | bytearray | memoryview):
        _fail("request body must be bytes")
    if len(body) > REQUEST_BODY_BYTES_MAX:
        _fail(f"request body is {len(body)} bytes, more than {REQUEST_BODY_BYTES_MAX}")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"request body is not valid UTF-8 (byte {exc.start})")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        _fail(f"request JSON nests deeper than {JSON_DEPTH_MAX} levels")
    except ValueError as exc:
        _fail(f"request body is not valid JSON: {_short(str(exc))}")
    if _depth_exceeds(obj, JSON_DEPTH_MAX):
        _fail(f"request JSON nests deeper than {JSON_DEPTH_MAX} levels")
    if not isinstance(obj, dict):
        _fail("request JSON must be an object")
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _depth_exceeds(obj: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in value)
    return False


def detect_request_format(obj: object) -> RequestFormat | None:
    """The provider format a parsed request body looks like, or None."""
    if not isinstance(obj, dict):
        return None
    if "contents" in obj or "systemInstruction" in obj or "system_instruction" in obj:
        return RequestFormat.GEMINI_GENERATE_CONTENT
    if "messages" in obj:
        return (
            RequestFormat.ANTHROPIC_MESSAGES
            if _looks_anthropic(obj)
            else RequestFormat.OPENAI_CHAT_COMPLETIONS
        )
    if "input" in obj or "instructions" in obj:
        return RequestFormat.OPENAI_RESPONSES
    return None


_ANTHROPIC_BLOCKS = frozenset(
    {"tool_use", "tool_result", "document", "thinking", "redacted_thinking", "server_tool_use"}
)


def _looks_anthropic(obj: Mapping[str, Any]) -> bool:
    model = obj.get("model")
    if isinstance(model, str) and "claude" in model.lower():
        return True
    if "system" in obj or "anthropic_version" in obj or "stop_sequences" in obj:
        return True
    tools = obj.get("tools")
    if isinstance(tools, list) and any(
        isinstance(tool, dict) and "input_schema" in tool for tool in tools
    ):
        return True
    choice = obj.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return True
    messages = obj.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for block in content:
                    if not isinstance(block, dict):
                        continue
                    kind = block.get("type")
                    if kind in _ANTHROPIC_BLOCKS or (kind == "image" and "source" in block):
                        return True
    return False


def max_output_tokens(obj: Mapping[str, Any], fmt: RequestFormat) -> int | None:
    """The output-token cap the body sets, if any."""
    keys: tuple[tuple[str, ...], ...]
    if fmt is RequestFormat.OPENAI_CHAT_COMPLETIONS:
        keys = (("max_completion_tokens",), ("max_tokens",))
    elif fmt is RequestFormat.OPENAI_RESPONSES:
        keys = (("max_output_tokens",),)
    elif fmt is RequestFormat.ANTHROPIC_MESSAGES:
        keys = (("max_tokens",),)
    else:
        keys = (
            ("generationConfig", "maxOutputTokens"),
            ("generationConfig", "max_output_tokens"),
            ("generation_config", "max_output_tokens"),
            ("generation_config", "maxOutputTokens"),
        )
    for path in keys:
        value: object = obj
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _fail(f"{'.'.join(path)} must be a non-negative integer")
        return value
    return None


# --- shared helpers ----------------------------------------------------------------


def _as_list(value: object, path: str, *, required: bool = False) -> list[Any]:
    if value is None:
        if required:
            _fail(f"{path} is required")
        return []
    if not isinstance(value, list):
        _fail(f"{path} must be an array")
    return value


def _as_dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{path} must be an object")
    return value


def _as_str(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(f"{path} must be a string")
    return value


def _json_text(value: object) -> str:
    return compact_json(value)


# Model families whose chat framing primes the reply with one token fewer
# (measured: o3-mini and o4-mini report 1 less than gpt-4o for the same messages).
_REASONING_PREFIXES = ("o1", "o3", "o4")

# Anthropic's tool-use system prompt, in tokens: (auto/none, any/tool), as its
# pricing page documents them, except the forced (any/tool) value of the Claude
# 4.x row: the documented 313 under-counts claude-sonnet-4-5 by 324 tokens in
# the corpus (pydantic-ai recordings), so the measured 637 is used.
_ANTHROPIC_TOOL_PROMPT: tuple[tuple[str, int, int], ...] = (
    ("claude-3-opus", 530, 281),
    ("claude-3-sonnet", 159, 235),
    ("claude-3-haiku", 264, 340),
    ("claude-3-5-haiku", 264, 340),
    ("claude-3-5-sonnet", 346, 313),
    ("claude-3-7-sonnet", 346, 313),
    ("claude", 346, 637),  # Claude 4.x (Opus, Sonnet, Haiku) and later
)


@dataclass(frozen=True)
class ApproxModel:
    """Calibrated approximation of a provider whose tokenizer is not public.

    ``ceil(factor * text + tool_factor * tool_text) + fixed``, where the text is
    counted with o200k_base (or a registered tokenizer) and ``fixed`` sums the
    per-request, per-message, per-tool, per-tool-call overheads, the tool
    prompt and the images.
    """

    name: str
    factor: float
    tool_factor: float
    per_request: int
    per_message: int
    per_tool: int
    per_tool_call: int
    tool_prompt: int = 0


# Calibrated by bench/token_accuracy.py on tests/data/token_corpus; see the
# report there for the measured error. Anthropic: the tool definitions count as
# their compact JSON (x0.78), plus the documented tool-use system prompt.
ANTHROPIC_APPROX = ApproxModel(
    name="approx-anthropic(o200k_base)",
    factor=1.0,
    tool_factor=0.78,
    per_request=4,
    per_message=3,
    per_tool=0,
    per_tool_call=20,
)
# Gemini: tool declarations and call arguments count by their names, keys and
# string values (the JSON punctuation is not in the prompt); Gemini 2.5 and
# later add a tool preamble.
GEMINI_APPROX = ApproxModel(
    name="approx-gemini(o200k_base)",
    factor=1.0,
    tool_factor=1.0,
    per_request=0,
    per_message=0,
    per_tool=0,
    per_tool_call=10,
    tool_prompt=25,
)
# Gemini 1.x/2.0: no tool preamble, declarations cheaper than their text.
GEMINI_LEGACY_APPROX = ApproxModel(
    name="approx-gemini(o200k_base)",
    factor=1.0,
    tool_factor=0.65,
    per_request=0,
    per_message=0,
    per_tool=0,
    per_tool_call=3,
)
_GEMINI_LEGACY_PREFIXES = ("gemini-1", "gemini-2.0")
_SCHEMA_KEYWORDS = frozenset(
    {"type", "description", "name", "properties", "items", "enum", "anyOf", "format", "title"}
)
_SCHEMA_SKIPPED = frozenset({"required", "additionalProperties", "$schema"})


@dataclass
class _Counter:
    model: str
    fmt: RequestFormat
    image_sizes: Mapping[str, tuple[int, int]] | None
    registry: TokenizerRegistry
    tokenizer: TextTokenizer = field(init=False)
    approx: ApproxModel | None = field(init=False, default=None)
    exact: bool = field(init=False)
    tokenizer_name: str = field(init=False)

    def __post_init__(self) -> None:
        registered = self.registry.lookup(self.model)
        openai_encoding = _openai_encoding_name(self.model)
        openai_format = self.fmt in (
            RequestFormat.OPENAI_CHAT_COMPLETIONS,
            RequestFormat.OPENAI_RESPONSES,
        )
        if registered is not None:
            self.tokenizer = registered
        elif openai_encoding is not None and openai_format:
            self.tokenizer = TiktokenTokenizer(get_encoding(openai_encoding))
        elif self.fmt is RequestFormat.ANTHROPIC_MESSAGES:
            self.tokenizer = TiktokenTokenizer(get_encoding("o200k_base"), exact=False)
            self.approx = ANTHROPIC_APPROX
        elif self.fmt is RequestFormat.GEMINI_GENERATE_CONTENT:
            self.tokenizer = TiktokenTokenizer(get_encoding("o200k_base"), exact=False)
            self.approx = _gemini_model(self.model)
        else:
            self.tokenizer = ApproxTokenizer()
        self.exact = self.tokenizer.exact and self.approx is None and openai_format
        self.tokenizer_name = self.approx.name if self.approx else self.tokenizer.name

    def text(self, value: str) -> int:
        return self.tokenizer.count(value)

    def count(self, obj: Mapping[str, Any]) -> int:
        if self.fmt is RequestFormat.OPENAI_CHAT_COMPLETIONS:
            return self._openai_chat(obj)
        if self.fmt is RequestFormat.OPENAI_RESPONSES:
            return self._openai_responses(obj)
        if self.fmt is RequestFormat.ANTHROPIC_MESSAGES:
            return self._anthropic(obj)
        return self._gemini(obj)

    # --- OpenAI ------------------------------------------------------------------

    def _priming(self) -> int:
        name = self.model.strip().lower().removeprefix("openai/")
        return 2 if name.startswith(_REASONING_PREFIXES) else 3

    def _openai_image(self, url: str, detail: str) -> int:
        size = images.image_size(url, self.image_sizes)
        if size is None:
            size = images.FALLBACK_IMAGE_SIZE
            detail = "high" if detail != "low" else detail
        return images.openai_image_tokens(self.model, size[0], size[1], detail)

    def _openai_parts(self, content: object, path: str, pad: bool) -> int:
        """Tokens of a message's content: a string or a list of parts."""
        if content is None:
            return 0
        if isinstance(content, str):
            return self.text(content + "\n" if pad else content)
        parts = _as_list(content, path)
        total = 0
        for index, raw in enumerate(parts):
            part_path = f"{path}[{index}]"
            if isinstance(raw, str):
                total += self.text(raw)
                continue
            part = _as_dict(raw, part_path)
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text", "refusal", None):
                key = "refusal" if kind == "refusal" else "text"
                total += self.text(_as_str(part.get(key), f"{part_path}.{key}"))
            elif kind == "image_url":
                image = part.get("image_url")
                if isinstance(image, str):
                    total += self._openai_image(image, "auto")
                else:
                    image_map = _as_dict(image, f"{part_path}.image_url")
                    url = _as_str(image_map.get("url"), f"{part_path}.image_url.url")
                    detail = _as_str(image_map.get("detail"), f"{part_path}.image_url.detail")
                    total += self._openai_image(url, detail or "auto")
            elif kind == "input_image":
                url = _as_str(part.get("image_url"), f"{part_path}.image_url")
                detail = _as_str(part.get("detail"), f"{part_path}.detail")
                total += self._openai_image(url, detail or "auto")
            # input_audio, file and input_file parts are billed by means the body
            # does not show (audio duration, extracted PDF text); not counted.
        return total

    def _function_defs(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        defs: list[dict[str, Any]] = []
        for index, raw in enumerate(_as_list(obj.get("tools"), "tools")):
            tool = _as_dict(raw, f"tools[{index}]")
            if isinstance(tool.get("function"), dict):
                defs.append(tool["function"])
            elif tool.get("type") == "function" and "name" in tool:
                defs.append(tool)  # Responses API: flattened function tool
            # built-in tools (web_search, file_search, ...) add prompts we cannot see.
        for index, raw in enumerate(_as_list(obj.get("functions"), "functions")):
            defs.append(_as_dict(raw, f"functions[{index}]"))
        for index, function in enumerate(defs):
            _as_str(function.get("name"), f"tools[{index}].name")
            _as_str(function.get("description"), f"tools[{index}].description")
        return defs

    def _tool_overhead(
        self, obj: Mapping[str, Any], defs: list[dict[str, Any]], has_system: bool
    ) -> int:
        if not defs:
            return 0
        total = self.text(render_functions(defs)) + 9
        if has_system:
            total -= 4
        choice = obj.get("tool_choice", obj.get("function_call"))
        if choice == "none":
            total += 1
        elif choice == "required":
            total -= 1
        elif isinstance(choice, dict):
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else choice.get("name")
            if isinstance(name, str):
                total += self.text(name) + 4
        return total

    def _response_format(self, schema_spec: object) -> int:
        """Tokens of a json_schema response format, rendered into the system message.

        Measured rendering: ``# Response Formats\n\n## <name>\n\n`` then
        ``// <description>\n`` and one more token when there is a description,
        then the schema as compact JSON; in strict mode without
        ``additionalProperties``/``required`` (both implied there).
        """
        if not isinstance(schema_spec, dict):
            return 0
        name = schema_spec.get("name")
        schema = schema_spec.get("schema")
        if not isinstance(schema, dict):
            return 0
        description = schema_spec.get("description")
        text = "# Response Formats\n\n## " + (name if isinstance(name, str) else "response")
        text += "\n\n"
        extra = 0
        if isinstance(description, str) and description:
            text += f"// {description}\n"
            extra = 1
        if schema_spec.get("strict") is True:
            schema = _strip_keys(schema, _STRICT_IMPLIED)
        return self.text(text + compact_json(schema)) + extra

    def _openai_chat(self, obj: Mapping[str, Any]) -> int:
        messages = _as_list(obj.get("messages"), "messages", required=True)
        defs = self._function_defs(obj)
        total = 0
        padded = False
        has_system = False
        for index, raw in enumerate(messages):
            path = f"messages[{index}]"
            message = _as_dict(raw, path)
            role = _as_str(message.get("role"), f"{path}.role") or "user"
            pad = False
            if role in ("system", "developer"):
                has_system = True
                if defs and not padded:
                    pad = padded = True
            total += self._openai_message(message, role, path, pad)
        total += self._priming()
        total += self._tool_overhead(obj, defs, has_system)
        response_format = obj.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            total += self._response_format(response_format.get("json_schema"))
        return total

    def _openai_message(self, message: Mapping[str, Any], role: str, path: str, pad: bool) -> int:
        total = 3 + self.text(role)
        total += self._openai_parts(message.get("content"), f"{path}.content", pad)
        name = _as_str(message.get("name"), f"{path}.name")
        if name:
            total += self.text(name) + 1
        for index, raw in enumerate(_as_list(message.get("tool_calls"), f"{path}.tool_calls")):
            call = _as_dict(raw, f"{path}.tool_calls[{index}]")
            function = call.get("function")
            if isinstance(function, dict):
                total += self._openai_call(function, f"{path}.tool_calls[{index}].function")
            else:
                total += self.text(_json_text(call)) + 3
        legacy = message.get("function_call")
        if legacy is not None:
            total += self._openai_call(_as_dict(legacy, f"{path}.function_call"), path)
        if role == "tool":
            total += _TOOL_RESULT_OVERHEAD
        elif role == "function":
            total -= 2
        return total

    def _openai_call(self, function: Mapping[str, Any], path: str) -> int:
        name = _as_str(function.get("name"), f"{path}.name")
        arguments = function.get("arguments")
        args_text = arguments if isinstance(arguments, str) else _json_text(arguments or {})
        return self.text(name) + self.text(args_text) + 3

    def _openai_responses(self, obj: Mapping[str, Any]) -> int:
        defs = self._function_defs(obj)
        total = 0
        has_system = False
        padded = False
        instructions = obj.get("instructions")
        if instructions is not None:
            has_system = True
            padded = bool(defs)
            total += 3 + self.text("developer")
            total += self._openai_parts(instructions, "instructions", padded)
        items = obj.get("input")
        if isinstance(items, str):
            total += 3 + self.text("user") + self.text(items)
        else:
            for index, raw in enumerate(_as_list(items, "input")):
                path = f"input[{index}]"
                item = _as_dict(raw, path)
                kind = item.get("type")
                if kind == "function_call":
                    total += 3 + self.text("assistant") + self._openai_call(item, path)
                elif kind == "function_call_output":
                    output = item.get("output")
                    total += 3 + self.text("tool") + _TOOL_RESULT_OVERHEAD
                    total += self._openai_parts(
                        output if isinstance(output, str | list) else _json_text(output),
                        f"{path}.output",
                        False,
                    )
                elif kind in (None, "message"):
                    role = _as_str(item.get("role"), f"{path}.role") or "user"
                    pad = False
                    if role in ("system", "developer"):
                        has_system = True
                        if defs and not padded:
                            pad = padded = True
                    total += 3 + self.text(role)
                    total += self._openai_parts(item.get("content"), f"{path}.content", pad)
                # reasoning and item_reference items, built-in tool calls: not counted.
        total += self._priming()
        total += self._tool_overhead(obj, defs, has_system)
        text_config = obj.get("text")
        if isinstance(text_config, dict):
            fmt = text_config.get("format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                total += self._response_format(fmt)
        return total

    # --- Anthropic and Gemini (approximate) -------------------------------------

    def _overheads(self) -> ApproxModel:
        if self.approx is not None:
            return self.approx
        if self.fmt is RequestFormat.ANTHROPIC_MESSAGES:
            return ANTHROPIC_APPROX
        return _gemini_model(self.model)

    def _scaled(self, text: int, tool_text: int, fixed: int) -> int:
        if self.approx is None:  # a registered tokenizer: its counts are used as they are
            return text + tool_text + fixed
        return math.ceil(text * self.approx.factor + tool_text * self.approx.tool_factor) + fixed

    def _anthropic(self, obj: Mapping[str, Any]) -> int:
        model = self._overheads()
        text = 0
        tool_text = 0
        fixed = model.per_request
        system = obj.get("system")
        if isinstance(system, str):
            text += self.text(system)
        elif system is not None:
            for index, block in enumerate(_as_list(system, "system")):
                text += self._anthropic_block_text(block, f"system[{index}]")
        messages = _as_list(obj.get("messages"), "messages", required=True)
        for index, raw in enumerate(messages):
            path = f"messages[{index}]"
            message = _as_dict(raw, path)
            _as_str(message.get("role"), f"{path}.role")
            fixed += model.per_message
            content = message.get("content")
            if isinstance(content, str):
                text += self.text(content)
                continue
            for block_index, block in enumerate(_as_list(content, f"{path}.content")):
                block_path = f"{path}.content[{block_index}]"
                kind = block.get("type") if isinstance(block, dict) else None
                if kind in ("tool_use", "tool_result", "server_tool_use"):
                    fixed += model.per_tool_call
                if kind == "image" and isinstance(block, dict):
                    fixed += self._anthropic_image(block)
                    continue
                text += self._anthropic_block_text(block, block_path)
        tools = _as_list(obj.get("tools"), "tools")
        if tools:
            fixed += self._anthropic_tool_prompt(obj.get("tool_choice"))
            for index, raw in enumerate(tools):
                tool = _as_dict(raw, f"tools[{index}]")
                fixed += model.per_tool
                tool_text += self.text(_json_text(tool))
        return self._scaled(text, tool_text, fixed)

    def _anthropic_block_text(self, block: object, path: str) -> int:
        if isinstance(block, str):
            return self.text(block)
        data = _as_dict(block, path)
        kind = data.get("type")
        if kind == "text":
            return self.text(_as_str(data.get("text"), f"{path}.text"))
        if kind in ("tool_use", "server_tool_use"):
            name = _as_str(data.get("name"), f"{path}.name")
            return self.text(name) + self.text(_json_text(data.get("input", {})))
        if kind == "tool_result":
            content = data.get("content")
            if isinstance(content, str):
                return self.text(content)
            total = 0
            for index, item in enumerate(_as_list(content, f"{path}.content")):
                if isinstance(item, dict) and item.get("type") == "image":
                    total += self._anthropic_image(item)
                else:
                    total += self._anthropic_block_text(item, f"{path}.content[{index}]")
            return total
        if kind in ("thinking", "redacted_thinking"):
            return 0  # thinking blocks of earlier turns are stripped from the prompt
        if kind == "document":
            source = data.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                return self.text(_as_str(source.get("data"), f"{path}.source.data"))
            return 0  # PDFs are billed per page image and text: not visible here
        return self.text(_json_text(data))

    def _anthropic_image(self, block: Mapping[str, Any]) -> int:
        source = block.get("source")
        size: tuple[int, int] | None = None
        if isinstance(source, dict):
            data = source.get("data")
            url = source.get("url")
            if source.get("type") == "base64" and isinstance(data, str):
                media = source.get("media_type")
                size = images.image_size(f"data:{media};base64,{data}", self.image_sizes)
            elif isinstance(url, str):
                size = images.image_size(url, self.image_sizes)
        width, height = size or images.FALLBACK_IMAGE_SIZE
        return images.anthropic_image_tokens(width, height)

    def _anthropic_tool_prompt(self, choice: object) -> int:
        name = self.model.strip().lower().removeprefix("anthropic/")
        forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
        best: tuple[str, int, int] | None = None
        for row in _ANTHROPIC_TOOL_PROMPT:
            if row[0] in name and (best is None or len(row[0]) > len(best[0])):
                best = row
        _, auto, any_tool = best or _ANTHROPIC_TOOL_PROMPT[-1]
        return any_tool if forced else auto

    def _gemini(self, obj: Mapping[str, Any]) -> int:
        model = self._overheads()
        text = 0
        tool_text = 0
        fixed = model.per_request
        system = obj.get("systemInstruction", obj.get("system_instruction"))
        if isinstance(system, str):
            text += self.text(system)
        elif system is not None:
            system_map = _as_dict(system, "systemInstruction")
            part_text, part_fixed = self._gemini_parts(
                system_map.get("parts"), "systemInstruction.parts"
            )
            text += part_text
            fixed += part_fixed
        contents = obj.get("contents")
        if isinstance(contents, str):
            text += self.text(contents)
        else:
            for index, raw in enumerate(_as_list(contents, "contents", required=True)):
                path = f"contents[{index}]"
                fixed += model.per_message
                if isinstance(raw, str):
                    text += self.text(raw)
                    continue
                content = _as_dict(raw, path)
                part_text, part_fixed = self._gemini_parts(content.get("parts"), f"{path}.parts")
                text += part_text
                fixed += part_fixed
        declared = False
        for index, raw in enumerate(_as_list(obj.get("tools"), "tools")):
            tool = _as_dict(raw, f"tools[{index}]")
            declarations = tool.get("functionDeclarations", tool.get("function_declarations"))
            path = f"tools[{index}].functionDeclarations"
            for decl_index, decl in enumerate(_as_list(declarations, path)):
                declared = True
                fixed += model.per_tool
                tool_text += self._values_text(_as_dict(decl, f"{path}[{decl_index}]"))
        if declared:
            fixed += model.tool_prompt
        return max(0, self._scaled(text, tool_text, fixed))

    def _values_text(self, value: object) -> int:
        """Tokens of the names, keys and values of a JSON value, without punctuation.

        Schema keywords are not counted themselves; ``required`` and
        ``additionalProperties`` add nothing.
        """
        total = 0
        stack: list[object] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                total += self.text(item)
            elif isinstance(item, dict):
                for key, child in item.items():
                    if key in _SCHEMA_SKIPPED:
                        continue
                    if key not in _SCHEMA_KEYWORDS:
                        total += self.text(key)
                    stack.append(child)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, bool | int | float):
                total += self.text(json.dumps(item))
        return total

    def _gemini_parts(self, parts: object, path: str) -> tuple[int, int]:
        model = self._overheads()
        text = 0
        fixed = 0
        for index, raw in enumerate(_as_list(parts, path)):
            part_path = f"{path}[{index}]"
            part = _as_dict(raw, part_path)
            if "text" in part:
                if part.get("thought") is True:
                    continue  # thoughts of earlier turns are not part of the prompt
                text += self.text(_as_str(part.get("text"), f"{part_path}.text"))
            elif "functionCall" in part or "function_call" in part:
                call = _as_dict(part.get("functionCall", part.get("function_call")), part_path)
                fixed += model.per_tool_call
                text += self.text(_as_str(call.get("name"), f"{part_path}.functionCall.name"))
                text += self._values_text(call.get("args", {}))
            elif "functionResponse" in part or "function_response" in part:
                response = _as_dict(
                    part.get("functionResponse", part.get("function_response")), part_path
                )
                fixed += model.per_tool_call
                name = _as_str(response.get("name"), f"{part_path}.functionResponse.name")
                text += self.text(name) + self._values_text(response.get("response", {}))
            elif "inlineData" in part or "inline_data" in part:
                data = _as_dict(part.get("inlineData", part.get("inline_data")), part_path)
                mime = data.get("mimeType", data.get("mime_type"))
                fixed += self._gemini_media(mime, data.get("data"), None)
            elif "fileData" in part or "file_data" in part:
                data = _as_dict(part.get("fileData", part.get("file_data")), part_path)
                mime = data.get("mimeType", data.get("mime_type"))
                fixed += self._gemini_media(mime, None, data.get("fileUri", data.get("file_uri")))
        return text, fixed

    def _gemini_media(self, mime: object, data: object, uri: object) -> int:
        if not (isinstance(mime, str) and mime.startswith("image/")):
            return 0  # audio, video and documents are billed by duration/pages: not counted
        size: tuple[int, int] | None = None
        if isinstance(data, str):
            size = images.image_size(f"data:{mime};base64,{data}", None)
        elif isinstance(uri, str):
            size = images.image_size(uri, self.image_sizes)
        width, height = size or images.FALLBACK_IMAGE_SIZE
        return images.gemini_image_tokens(width, height)


def _gemini_model(model: str) -> ApproxModel:
    name = model.strip().lower().removeprefix("google/").removeprefix("models/")
    return GEMINI_LEGACY_APPROX if name.startswith(_GEMINI_LEGACY_PREFIXES) else GEMINI_APPROX


# Calibrated on the corpus: an assistant tool call plus its tool result cost
# 8 tokens beyond their names, arguments, content and message framing.
_TOOL_RESULT_OVERHEAD = 5
_STRICT_IMPLIED = frozenset({"additionalProperties", "required"})


def _strip_keys(value: object, keys: frozenset[str]) -> object:
    if isinstance(value, dict):
        return {k: _strip_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_strip_keys(v, keys) for v in value]
    return value


def _openai_encoding_name(model: str) -> str | None:
    name = model.strip().lower().removeprefix("openai/")
    if name.startswith("gpt-oss"):
        return "o200k_harmony"
    return encoding_name_for(model)


def iter_corpus_texts(obj: Mapping[str, Any]) -> Iterator[str]:
    """Every string in a parsed body (for the chars/4 baseline of the benchmark)."""
    stack: list[object] = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
