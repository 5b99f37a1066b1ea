"""Extract normalized token usage from a provider's raw response body or stream tail.

A relay hands metering the bytes it got back from the provider: one JSON
response body, or the tail of a server-sent-event (or newline-delimited JSON)
stream. This module turns them into a :class:`TokenUsage` with the nesting of
``proto/metering/v1/types.proto``, so that each provider's accounting quirks are
handled once, here, and not again in every relay:

- OpenAI (chat and Responses) and Workers AI count cached tokens inside the
  prompt, which is already our convention;
- Anthropic's ``input_tokens`` exclude cache reads and writes, and a stream
  splits its usage between ``message_start`` and ``message_delta``;
- Gemini reports thoughts and tool-use prompts beside, not inside, the
  candidate and prompt counts.

The input is hostile until proven otherwise: its size, encoding, JSON nesting
and every count's type and range are checked, and the only exception raised is
:class:`InvalidArgument`, every violation naming the request field the bytes
came in (``field``). Standard library only, like the rest of the domain.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

from metering_client._extraction.errors import FieldViolation, InvalidArgument, Violations
from metering_client._extraction.usage import TOKENS_PER_RECORD_MAX, TokenUsage

# The gRPC message limit is 4 MiB too; a response or tail larger than this is
# not something a relay should be buffering for metering.
RAW_BODY_BYTES_MAX = 4 * 1024 * 1024
# Real provider payloads nest fewer than ten levels. json.loads recurses once per
# level, so the depth is bounded before it runs (see _depth).
JSON_DEPTH_MAX = 64


class ResponseFormat(enum.Enum):
    """The provider wire format of a raw response; names match the proto enum's."""

    OPENAI_CHAT_COMPLETIONS = "OPENAI_CHAT_COMPLETIONS"
    OPENAI_RESPONSES = "OPENAI_RESPONSES"
    ANTHROPIC_MESSAGES = "ANTHROPIC_MESSAGES"
    GEMINI_GENERATE_CONTENT = "GEMINI_GENERATE_CONTENT"
    WORKERS_AI = "WORKERS_AI"
    DIFY = "DIFY"


@dataclass(frozen=True)
class Extracted:
    """What a raw response says about its own usage.

    ``usage`` is None when the response carries no usage (e.g. an OpenAI stream
    without ``stream_options.include_usage``, or a tail cut before it).
    ``has_completion`` says whether any output (text, tool call, refusal,
    reasoning text) was seen, so that a caller can treat an all-zero usage
    next to a non-empty completion as missing rather than free.
    """

    usage: TokenUsage | None
    format: ResponseFormat
    model: str
    has_completion: bool
    streamed: bool


def extract_usage(
    raw: bytes, fmt: ResponseFormat | None = None, field: str = "response_json"
) -> Extracted:
    """Extract the usage of one response body or stream tail in format ``fmt``.

    With ``fmt`` None the format is detected from the shape. Raises
    InvalidArgument (every violation on ``field``) for input that is too large,
    not UTF-8, not JSON nor a stream of JSON events, nested too deeply, of an
    undetectable format, or whose counts are malformed or inconsistent.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _invalid(field, f"must be bytes, got {type(raw).__name__}")
    data = bytes(raw)
    if len(data) > RAW_BODY_BYTES_MAX:
        raise _invalid(field, f"is {len(data)} bytes; at most {RAW_BODY_BYTES_MAX} are accepted")
    parsed = _parse(_decode(data, field), field)
    if fmt is None:
        fmt = _detect_stream(parsed.events)
        if fmt is None:
            raise _invalid(field, "could not detect the response format; set format")
    reader = _Reader(field)
    seen = _EXTRACTORS[fmt](parsed.events, reader)
    reader.violations.raise_if_any()
    if seen.usage is not None:
        _check_normalized(seen.usage, reader)
        reader.violations.raise_if_any()
    return Extracted(
        usage=seen.usage,
        format=fmt,
        model=seen.model,
        has_completion=seen.has_completion,
        streamed=parsed.streamed,
    )


def detect_format(obj: object) -> ResponseFormat | None:
    """The format of one parsed response body or stream event, None if unknown.

    A list is taken as Gemini's JSON-array stream: its first recognizable
    element decides.
    """
    if isinstance(obj, dict):
        return _detect_object(obj, "")
    if isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                found = _detect_object(item, "")
                if found is not None:
                    return found
    return None


# --- reading the bytes ---------------------------------------------------------


class _Event(NamedTuple):
    """One JSON object: the whole body, one element of a JSON array, or one stream event.

    A tuple, not a dataclass: a hostile 4 MiB stream holds a million of them.
    """

    obj: dict[str, Any]
    # Where it came from, for messages: unit "" (the body), "line" or "item"
    # (of a JSON array) and its number; formatted only if there is a problem.
    unit: str
    number: int
    sse_event: str  # the SSE `event:` field in force for it, "" if none


@dataclass(frozen=True)
class _Parsed:
    events: list[_Event]
    streamed: bool


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])


def _too_deep(field: str, where: str) -> InvalidArgument:
    return _invalid(field, f"nests JSON deeper than {JSON_DEPTH_MAX} levels{where}")


def _decode(data: bytes, field: str) -> str:
    # A stream tail is cut at a byte offset, possibly inside a multi-byte
    # character; its continuation bytes (at most three) can only belong to the
    # partial first line, which is skipped anyway, so they are dropped rather
    # than failing the whole tail as "not UTF-8".
    cut = 0
    while cut < 3 and cut < len(data) and 0x80 <= data[cut] <= 0xBF:
        cut += 1
    try:
        text = data[cut:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(field, f"is not valid UTF-8 (at byte {exc.start + cut})") from None
    return text.removeprefix("\ufeff")


# A JSON string, or an unterminated one running to the end of the text. Written
# so that a match starting at a quote always succeeds without backtracking:
# re.sub then scans the text once, even for hostile input like `"\"\"\"...`.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """The bracket nesting depth of a JSON text, outside strings, without parsing it.

    When the text has no more opening brackets than the limit allows, their
    count is returned instead: a bound that is enough to let it through.
    Up to the first syntax error json.loads tokenizes strings exactly as
    _JSON_STRING does, so it never nests deeper than this before it fails.
    Linear in the text, and done in C (re, itertools) because inputs reach 4 MiB.
    """
    opening = text.count("{") + text.count("[")
    if opening <= JSON_DEPTH_MAX:
        # No deeper than the number of opening brackets: the common stream
        # line needs no scan (a 4 MiB stream can have a million lines).
        return opening
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


_NOT_JSON = object()


def _reject_constant(name: str) -> object:
    # NaN and Infinity are Python extensions, not JSON.
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with arguments builds a decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> object:
    """The parsed JSON text, or _NOT_JSON. Call only after _depth has bounded it."""
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        # ValueError covers syntax errors and integers beyond Python's digit
        # limit. RecursionError cannot happen after the _depth check; it is
        # caught so that a flaw there would refuse the input, not crash.
        return _NOT_JSON


def _parse(text: str, field: str) -> _Parsed:
    body = text.strip()
    if not body:
        raise _invalid(field, "is empty; expected a JSON response body or an SSE stream")
    too_deep = False
    if body[0] in "{[":
        if _depth(body) > JSON_DEPTH_MAX:
            # Maybe a stream whose partial first line fooled the string scan;
            # the lines decide, and refuse it if it is deep there too.
            too_deep = True
        else:
            doc = _loads(body)
            if doc is not _NOT_JSON:
                return _document(doc, field)
    return _lines(text, field, too_deep)


def _document(doc: object, field: str) -> _Parsed:
    if isinstance(doc, dict):
        return _Parsed([_Event(doc, "", 0, "")], streamed=False)
    if isinstance(doc, list):
        # Gemini's streamGenerateContent without alt=sse: one array of chunks.
        events = [
            _Event(item, "item", index, "")
            for index, item in enumerate(doc)
            if isinstance(item, dict)
        ]
        if events:
            return _Parsed(events, streamed=True)
    raise _invalid(field, "must be a JSON object, a JSON array of stream chunks, or an SSE stream")


def _lines(text: str, field: str, too_deep: bool) -> _Parsed:
    """The JSON events of an SSE or NDJSON stream, or of the tail of one.

    Each line is parsed on its own rather than joining an event's `data:`
    lines: every provider sends an event's JSON on one line, and line by line
    survives a tail cut mid-event and proxies that drop the blank separators.
    Lines that are not JSON objects (the partial first line of a tail,
    comments, `id:`, `retry:`) are skipped.
    """
    events: list[_Event] = []
    sse_event = ""
    done = False
    first = True
    # SSE ends lines with CRLF, LF or CR; a JSON text never holds a raw one.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            sse_event = ""  # a blank line ends an SSE event
            continue
        is_first, first = first, False
        head = line[0]
        if head == "{":
            payload = line  # newline-delimited JSON
        elif head == "d" and line.startswith("data:"):
            payload = line[5:].lstrip()
            if not payload.startswith("{"):
                done = done or payload == "[DONE]"
                continue
        elif head == "e" and line.startswith("event:"):
            sse_event = line[6:].strip()
            continue
        else:
            continue  # comments, id:, retry:, and the partial first line of a tail
        if _depth(payload) > JSON_DEPTH_MAX:
            if is_first:
                # The first line of a tail may start inside a string, which
                # inverts the string scan; skip it (unparsed) rather than refuse.
                too_deep = True
                continue
            raise _too_deep(field, f" (line {number})")
        obj = _loads(payload)
        if isinstance(obj, dict):
            events.append(_Event(obj, "line", number, sse_event))
    if not events and not done:
        if too_deep:
            raise _too_deep(field, "")
        raise _invalid(
            field,
            "is neither a JSON document nor an SSE or NDJSON stream of JSON events",
        )
    return _Parsed(events, streamed=True)


# --- detecting the format ---------------------------------------------------------

_CHAT_OBJECTS = frozenset({"chat.completion", "chat.completion.chunk", "text_completion"})
_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)
_DIFY_EVENTS = frozenset(
    {
        "message",
        "agent_message",
        "agent_thought",
        "message_end",
        "message_file",
        "message_replace",
        "tts_message",
        "tts_message_end",
        "workflow_started",
        "workflow_finished",
        "node_started",
        "node_finished",
    }
)


def _detect_object(obj: dict[str, Any], sse_event: str) -> ResponseFormat | None:
    # Explicit markers first (object, type, event), then the shape.
    obj_kind = obj.get("object")
    # Only strings are looked up in the sets: a hostile list or object is unhashable.
    if isinstance(obj_kind, str) and obj_kind in _CHAT_OBJECTS:
        return ResponseFormat.OPENAI_CHAT_COMPLETIONS
    kind = obj.get("type")
    if not isinstance(kind, str):
        kind = sse_event
    if obj_kind == "response" or kind.startswith("response."):
        return ResponseFormat.OPENAI_RESPONSES
    if kind == "message" or kind in _ANTHROPIC_EVENTS:
        return ResponseFormat.ANTHROPIC_MESSAGES
    event = obj.get("event")
    if (isinstance(event, str) and event in _DIFY_EVENTS) or sse_event == "message_end":
        return ResponseFormat.DIFY
    if "usageMetadata" in obj or isinstance(obj.get("candidates"), list):
        return ResponseFormat.GEMINI_GENERATE_CONTENT
    result = obj.get("result")
    if isinstance(result, dict) and any(k in result for k in ("response", "usage", "choices")):
        return ResponseFormat.WORKERS_AI
    if isinstance(obj.get("response"), str):  # a Workers AI stream event
        return ResponseFormat.WORKERS_AI
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("usage"), dict):
        return ResponseFormat.DIFY
    if isinstance(obj.get("choices"), list):  # OpenAI-compatible servers omitting `object`
        return ResponseFormat.OPENAI_CHAT_COMPLETIONS
    return None


def _detect_stream(events: list[_Event]) -> ResponseFormat | None:
    for event in events:
        found = _detect_object(event.obj, event.sse_event)
        if found is not None:
            return found
    return None


# --- reading counts -----------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float):
        finite = value == value and abs(value) != float("inf")
        return "a fraction" if finite else "a non-finite number"
    return type(value).__name__


class _Reader:
    """Reads a provider's objects and counts, collecting every problem on one field.

    Descriptions carry the provider's own path (e.g. ``usage.prompt_tokens``)
    and, in a stream, the line, because the request field alone is the whole body.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.at: tuple[str, int] = ("", 0)  # the event being read: _Event.unit, .number
        self.violations = Violations()

    def problem(self, path: str, description: str) -> None:
        unit, number = self.at
        where = f" ({unit} {number})" if unit else ""
        self.violations.add(self.field, f"{path} {description}{where}")

    def object(self, parent: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
        """parent[key] if it is an object; None if absent or null (providers send both)."""
        value = parent.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.problem(_join(path, key), f"must be a JSON object, got {_kind(value)}")
        return None

    def count(self, parent: dict[str, Any] | None, key: str, path: str) -> int | None:
        """parent[key] as a token count; None if absent or null, or if it is malformed."""
        if parent is None:
            return None
        value = parent.get(key)
        if value is None:
            return None
        name = _join(path, key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 12.0 is a count some serializers write
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, f"must be a non-negative integer, got {_kind(value)}")
            return None
        if value < 0:
            self.problem(name, "must not be negative")
            return None
        if value > TOKENS_PER_RECORD_MAX:
            self.problem(name, f"must be at most {TOKENS_PER_RECORD_MAX}")
            return None
        return value


def _check_normalized(usage: TokenUsage, reader: _Reader) -> None:
    # TokenUsage.check names our fields (usage.cache_read_tokens), which are not
    # fields of the request; the request field is the raw body, so the problem
    # is reported on it, with the normalized counts to explain it.
    found = Violations()
    usage.check(found)
    for violation in found.items:
        reader.violations.add(
            reader.field,
            f"the usage it reports is inconsistent: {violation.description} (normalized: "
            f"input_tokens={usage.input_tokens}, output_tokens={usage.output_tokens}, "
            f"cache_read_tokens={usage.cache_read_tokens}, "
            f"cache_write_tokens={usage.cache_write_tokens}, "
            f"cache_write_1h_tokens={usage.cache_write_1h_tokens}, "
            f"reasoning_tokens={usage.reasoning_tokens})",
        )


# --- what each format says ------------------------------------------------------------


@dataclass
class _Seen:
    usage: TokenUsage | None = None
    model: str = ""
    has_completion: bool = False

    def saw_model(self, value: object) -> None:
        # The first model reported wins; later events of a stream repeat it.
        if not self.model and isinstance(value, str):
            self.model = value


def _nonempty(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _event_type(event: _Event) -> str:
    kind = event.obj.get("type")
    return kind if isinstance(kind, str) else event.sse_event


# OpenAI chat completions (and the OpenAI-compatible shape of other servers).


def _openai_chat_usage(usage: dict[str, Any], path: str, r: _Reader) -> TokenUsage | None:
    prompt = r.count(usage, "prompt_tokens", path)
    completion = r.count(usage, "completion_tokens", path)
    prompt_details = r.object(usage, "prompt_tokens_details", path)
    cached = r.count(prompt_details, "cached_tokens", _join(path, "prompt_tokens_details"))
    if cached is None:
        # DeepSeek reports its context-cache hits beside the details object.
        cached = r.count(usage, "prompt_cache_hit_tokens", path)
    completion_details = r.object(usage, "completion_tokens_details", path)
    reasoning = r.count(
        completion_details, "reasoning_tokens", _join(path, "completion_tokens_details")
    )
    if prompt is None and completion is None:
        return None
    # prompt_tokens already include the cached tokens, completion_tokens the
    # reasoning tokens: both map directly. OpenAI reports no cache writes.
    return TokenUsage(
        input_tokens=prompt or 0,
        output_tokens=completion or 0,
        cache_read_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def _chat_message_has_output(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if _nonempty(content):
        return True
    if isinstance(content, list) and any(
        isinstance(part, dict) and _nonempty(part.get("text")) for part in content
    ):
        return True
    tool_calls = message.get("tool_calls")
    return (
        _nonempty(message.get("refusal"))
        or _nonempty(message.get("reasoning_content"))  # DeepSeek's reasoning text
        or (isinstance(tool_calls, list) and len(tool_calls) > 0)
        or isinstance(message.get("function_call"), dict)
    )


def _chat_choices_have_output(choices: object) -> bool:
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if _nonempty(choice.get("text")):  # legacy completions
            return True
        for key in ("message", "delta"):
            message = choice.get(key)
            if isinstance(message, dict) and _chat_message_has_output(message):
                return True
    return False


def _chat_body(body: dict[str, Any], path: str, r: _Reader, seen: _Seen) -> None:
    seen.saw_model(body.get("model"))
    if _chat_choices_have_output(body.get("choices")):
        seen.has_completion = True
    usage = r.object(body, "usage", path)
    if usage is not None:
        # Streams with include_usage send `usage: null` until the last chunk;
        # some compatible servers send running totals on every chunk: the last wins.
        found = _openai_chat_usage(usage, _join(path, "usage"), r)
        if found is not None:
            seen.usage = found


def _openai_chat(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    for event in events:
        r.at = (event.unit, event.number)
        _chat_body(event.obj, "", r, seen)
    return seen


# OpenAI Responses.

_RESPONSES_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
    }
)


def _responses_usage(usage: dict[str, Any], path: str, r: _Reader) -> TokenUsage | None:
    input_tokens = r.count(usage, "input_tokens", path)
    output_tokens = r.count(usage, "output_tokens", path)
    cached = r.count(
        r.object(usage, "input_tokens_details", path),
        "cached_tokens",
        _join(path, "input_tokens_details"),
    )
    reasoning = r.count(
        r.object(usage, "output_tokens_details", path),
        "reasoning_tokens",
        _join(path, "output_tokens_details"),
    )
    if input_tokens is None and output_tokens is None:
        return None
    return TokenUsage(
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cache_read_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def _responses_item_has_output(item: dict[str, Any]) -> bool:
    if item.get("type") == "function_call":
        return _nonempty(item.get("arguments"))
    content = item.get("content")  # a message: output_text and refusal parts
    return isinstance(content, list) and any(
        isinstance(part, dict) and (_nonempty(part.get("text")) or _nonempty(part.get("refusal")))
        for part in content
    )


def _responses_body(response: dict[str, Any], path: str, r: _Reader, seen: _Seen) -> None:
    seen.saw_model(response.get("model"))
    output = response.get("output")
    if _nonempty(response.get("output_text")) or (
        isinstance(output, list)
        and any(isinstance(item, dict) and _responses_item_has_output(item) for item in output)
    ):
        seen.has_completion = True
    usage = r.object(response, "usage", path)
    if usage is not None:
        found = _responses_usage(usage, _join(path, "usage"), r)
        if found is not None:
            seen.usage = found


def _openai_responses(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    for event in events:
        r.at = (event.unit, event.number)
        obj = event.obj
        kind = _event_type(event)
        if obj.get("object") == "response":
            _responses_body(obj, "", r, seen)
            continue
        if not kind.startswith("response."):
            continue
        # response.created / in_progress carry `usage: null`; completed,
        # incomplete and failed carry the final usage.
        response = r.object(obj, "response", "")
        if response is not None:
            _responses_body(response, "response", r, seen)
        item = obj.get("item")
        if (
            (kind in _RESPONSES_DELTAS and _nonempty(obj.get("delta")))
            or (kind == "response.output_text.done" and _nonempty(obj.get("text")))
            or (isinstance(item, dict) and _responses_item_has_output(item))
        ):
            seen.has_completion = True
    return seen


# Anthropic messages.

_ANTHROPIC_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_ANTHROPIC_TTL_COUNTS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def _anthropic_merge(usage: dict[str, Any], path: str, r: _Reader, merged: dict[str, int]) -> None:
    # Stream usage counts are cumulative: a later event's count replaces an
    # earlier one (message_delta's output_tokens replaces message_start's
    # placeholder), and what a later event leaves out stays as it was.
    for key in _ANTHROPIC_COUNTS:
        value = r.count(usage, key, path)
        if value is not None:
            merged[key] = value
    cache_creation = r.object(usage, "cache_creation", path)
    for key in _ANTHROPIC_TTL_COUNTS:
        value = r.count(cache_creation, key, _join(path, "cache_creation"))
        if value is not None:
            merged[key] = value


def _anthropic_usage(merged: dict[str, int], r: _Reader) -> TokenUsage | None:
    if "input_tokens" not in merged:
        # A tail that lost message_start (and a message_delta from before
        # Anthropic repeated input counts there) says nothing of the prompt;
        # a usage with input_tokens=0 would silently under-bill it.
        return None
    cache_read = merged.get("cache_read_input_tokens", 0)
    five_minutes = merged.get("ephemeral_5m_input_tokens")
    one_hour = merged.get("ephemeral_1h_input_tokens")
    cache_write = merged.get("cache_creation_input_tokens")
    if cache_write is None:
        cache_write = (five_minutes or 0) + (one_hour or 0)
    elif (
        five_minutes is not None and one_hour is not None and five_minutes + one_hour != cache_write
    ):
        # The one-hour part is priced apart; a split that does not add up
        # leaves the lifetime of the difference (and so its price) a guess.
        r.problem(
            "usage.cache_creation",
            f"ephemeral_5m_input_tokens + ephemeral_1h_input_tokens "
            f"({five_minutes} + {one_hour}) must equal cache_creation_input_tokens ({cache_write})",
        )
    # Anthropic's input_tokens exclude cache reads and writes; ours include them.
    # Thinking is inside output_tokens and not reported apart: reasoning stays 0.
    return TokenUsage(
        input_tokens=merged["input_tokens"] + cache_write + cache_read,
        output_tokens=merged.get("output_tokens", 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=one_hour or 0,
    )


def _anthropic_block_has_output(block: dict[str, Any]) -> bool:
    return (
        _nonempty(block.get("text"))
        or _nonempty(block.get("thinking"))
        or block.get("type") in ("tool_use", "server_tool_use", "redacted_thinking")
    )


def _anthropic_message(
    message: dict[str, Any], path: str, r: _Reader, seen: _Seen, merged: dict[str, int]
) -> None:
    seen.saw_model(message.get("model"))
    content = message.get("content")
    if isinstance(content, list) and any(
        isinstance(block, dict) and _anthropic_block_has_output(block) for block in content
    ):
        seen.has_completion = True
    usage = r.object(message, "usage", path)
    if usage is not None:
        _anthropic_merge(usage, _join(path, "usage"), r, merged)


def _anthropic(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    merged: dict[str, int] = {}
    for event in events:
        r.at = (event.unit, event.number)
        obj = event.obj
        kind = _event_type(event)
        if kind == "message":
            _anthropic_message(obj, "", r, seen, merged)
        elif kind == "message_start":
            message = r.object(obj, "message", "")
            if message is not None:
                _anthropic_message(message, "message", r, seen, merged)
        elif kind == "message_delta":
            usage = r.object(obj, "usage", "")
            if usage is not None:
                _anthropic_merge(usage, "usage", r, merged)
        elif kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and _anthropic_block_has_output(block):
                seen.has_completion = True
        elif kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and any(
                _nonempty(delta.get(key)) for key in ("text", "thinking", "partial_json")
            ):
                seen.has_completion = True
    r.at = ("", 0)
    seen.usage = _anthropic_usage(merged, r)
    return seen


# Gemini generateContent / streamGenerateContent.


def _gemini_usage(metadata: dict[str, Any], path: str, r: _Reader) -> TokenUsage:
    prompt = r.count(metadata, "promptTokenCount", path)
    cached = r.count(metadata, "cachedContentTokenCount", path)
    candidates = r.count(metadata, "candidatesTokenCount", path)
    thoughts = r.count(metadata, "thoughtsTokenCount", path)
    tool_use = r.count(metadata, "toolUsePromptTokenCount", path)
    # totalTokenCount should be the sum of the others, but it is not read: a
    # mismatch would not say which count is wrong, and refusing would lose a
    # record that the parts describe fully.
    # proto3 JSON omits zero counts, so absent means 0 (and an empty
    # usageMetadata is an all-zero usage, not a missing one). promptTokenCount
    # includes the cached content; tool-use prompts are counted beside it, and
    # thoughts beside the candidates (and are billed as output).
    return TokenUsage(
        input_tokens=(prompt or 0) + (tool_use or 0),
        output_tokens=(candidates or 0) + (thoughts or 0),
        cache_read_tokens=cached or 0,
        reasoning_tokens=thoughts or 0,
    )


def _gemini_candidates_have_output(candidates: object) -> bool:
    if not isinstance(candidates, list):
        return False
    for candidate in candidates:
        content = candidate.get("content") if isinstance(candidate, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        if isinstance(parts, list) and any(
            isinstance(part, dict)
            and (_nonempty(part.get("text")) or isinstance(part.get("functionCall"), dict))
            for part in parts
        ):
            return True
    return False


def _gemini(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    for event in events:
        r.at = (event.unit, event.number)
        obj = event.obj
        seen.saw_model(obj.get("modelVersion"))
        if _gemini_candidates_have_output(obj.get("candidates")):
            seen.has_completion = True
        metadata = r.object(obj, "usageMetadata", "")
        if metadata is not None:
            # Stream chunks carry running totals; the last one is the whole call.
            seen.usage = _gemini_usage(metadata, "usageMetadata", r)
    return seen


# Cloudflare Workers AI.


def _workers_ai(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    for event in events:
        r.at = (event.unit, event.number)
        obj = event.obj
        # The REST API wraps the model's output in {"result": ..., "success": ...};
        # the bindings, the streams and the OpenAI-compatible endpoints do not.
        result = obj.get("result")
        body, path = (result, "result") if isinstance(result, dict) else (obj, "")
        # Native usage is {prompt_tokens, completion_tokens, total_tokens}, the
        # OpenAI shape, so the chat reading covers both.
        _chat_body(body, path, r, seen)
        response = body.get("response")
        tool_calls = body.get("tool_calls")
        if (
            _nonempty(response)
            or (isinstance(response, dict | list) and len(response) > 0)  # JSON mode
            or (isinstance(tool_calls, list) and len(tool_calls) > 0)
        ):
            seen.has_completion = True
    return seen


# Dify chat-messages / completion-messages.


def _dify_usage(usage: dict[str, Any], path: str, r: _Reader) -> TokenUsage | None:
    # The price fields beside the counts are Dify's own bookkeeping, not ours.
    prompt = r.count(usage, "prompt_tokens", path)
    completion = r.count(usage, "completion_tokens", path)
    if prompt is None and completion is None:
        return None
    return TokenUsage(input_tokens=prompt or 0, output_tokens=completion or 0)


def _dify(events: list[_Event], r: _Reader) -> _Seen:
    seen = _Seen()
    for event in events:
        r.at = (event.unit, event.number)
        obj = event.obj
        if _nonempty(obj.get("answer")):
            seen.has_completion = True
        # The blocking response and the message_end event carry metadata.usage.
        metadata = r.object(obj, "metadata", "")
        usage = r.object(metadata, "usage", "metadata") if metadata is not None else None
        if usage is not None:
            found = _dify_usage(usage, "metadata.usage", r)
            if found is not None:
                seen.usage = found
    return seen


_EXTRACTORS = {
    ResponseFormat.OPENAI_CHAT_COMPLETIONS: _openai_chat,
    ResponseFormat.OPENAI_RESPONSES: _openai_responses,
    ResponseFormat.ANTHROPIC_MESSAGES: _anthropic,
    ResponseFormat.GEMINI_GENERATE_CONTENT: _gemini,
    ResponseFormat.WORKERS_AI: _workers_ai,
    ResponseFormat.DIFY: _dify,
}
