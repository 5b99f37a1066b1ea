"""Text tokenizers behind one small interface, hardened against hostile text.

tiktoken's regex split overflows its stack on a run of several hundred
thousand horizontal whitespace characters (o200k_base panics, which Python
sees as a ``BaseException``). In texts of at least 256 Ki characters, runs
longer than ``WHITESPACE_RUN_MAX`` are therefore counted in slices of that
length, which can differ from the provider by a token or two per such run, and
any failure of the tokenizer falls back to the characters-per-token
approximation for that piece of text.
"""

from __future__ import annotations

import re
from typing import Protocol

import tiktoken

APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx-chars-per-token"
WHITESPACE_RUN_MAX = 65_536
# Shorter texts are encoded whole: a run that long is harmless below this size,
# and the scan would cost more than it saves (a tokenizer panic still falls back).
_SCAN_MIN_LENGTH = 4 * WHITESPACE_RUN_MAX

_LONG_WHITESPACE = re.compile(rf"[^\S\r\n]{{{WHITESPACE_RUN_MAX},}}")


class TextTokenizer(Protocol):
    """Counts the tokens of plain text (special-token strings are ordinary text)."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    def count(self, text: str) -> int: ...


def approx_count(text: str) -> int:
    """About four characters per token, rounded up."""
    return -(-len(text) // APPROX_CHARS_PER_TOKEN)


class ApproxTokenizer:
    """The characters-per-token approximation."""

    name = APPROX_TOKENIZER
    exact = False

    def count(self, text: str) -> int:
        return approx_count(text)


def _is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError)


def encode_count(encoding: tiktoken.Encoding, text: str) -> int:
    """``len(encoding.encode_ordinary(text))`` that never raises on odd or huge text."""
    if not text:
        return 0
    if len(text) < _SCAN_MIN_LENGTH:
        return _encode_piece(encoding, text)
    total = 0
    start = 0
    for match in _LONG_WHITESPACE.finditer(text):
        total += _encode_piece(encoding, text[start : match.start()])
        run = match.group()
        for offset in range(0, len(run), WHITESPACE_RUN_MAX):
            total += _encode_piece(encoding, run[offset : offset + WHITESPACE_RUN_MAX])
        start = match.end()
    return total + _encode_piece(encoding, text[start:])


def _encode_piece(encoding: tiktoken.Encoding, text: str) -> int:
    if not text:
        return 0
    try:
        return len(encoding.encode_ordinary(text))
    except BaseException as exc:  # tiktoken panics surface as BaseException
        if _is_fatal(exc):
            raise
        return approx_count(text)


class TiktokenTokenizer:
    """A tiktoken encoding; ``exact`` says whether it is the model's own tokenizer."""

    def __init__(self, encoding: tiktoken.Encoding, *, name: str | None = None, exact: bool = True):
        self._encoding = encoding
        self._name = name or encoding.name
        self._exact = exact

    @property
    def name(self) -> str:
        return self._name

    @property
    def exact(self) -> bool:
        return self._exact

    @property
    def encoding(self) -> tiktoken.Encoding:
        return self._encoding

    def count(self, text: str) -> int:
        return encode_count(self._encoding, text)
