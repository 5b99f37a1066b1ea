"""Operator-registered tokenizers for models without a vendored vocabulary.

An operator maps a model glob (``fnmatch`` syntax, case-insensitive, e.g.
``"mistral-*"``) to a tokenizer file on disk:

* a tiktoken BPE file (one ``<base64 token> <rank>`` per line), split with a
  given ``pat_str`` (cl100k_base's pattern by default);
* a Hugging Face ``tokenizer.json``, only when the ``tokenizers`` package is
  importable (registration raises ``TokenizerUnavailable`` otherwise).

Files are read and validated at registration, so a bad file fails at start-up
and never at request time. The first registered pattern that matches wins.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tiktoken

from metering.tokens.textcount import TextTokenizer, TiktokenTokenizer
from metering.tokens.vocab import CL100K_PATTERN

TokenizerKind = Literal["tiktoken", "huggingface"]


class TokenizerFileError(ValueError):
    """A registered tokenizer file is missing or malformed."""


class TokenizerUnavailable(RuntimeError):
    """The library needed for a tokenizer file is not installed."""


class HuggingFaceTokenizer:
    """A ``tokenizers.Tokenizer`` loaded from a tokenizer.json file."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self._tokenizer = tokenizer
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def exact(self) -> bool:
        return False

    def count(self, text: str) -> int:
        if not text:
            return 0
        encoded = self._tokenizer.encode(text, add_special_tokens=False)
        return len(encoded.ids)


@dataclass(frozen=True)
class _Entry:
    pattern: str
    tokenizer: TextTokenizer


class TokenizerRegistry:
    """Model glob -> tokenizer; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def register(
        self,
        pattern: str,
        path: str | os.PathLike[str],
        *,
        kind: TokenizerKind | None = None,
        pat_str: str | None = None,
        name: str | None = None,
    ) -> TextTokenizer:
        """Load the tokenizer at ``path`` and use it for models matching ``pattern``."""
        if not pattern.strip():
            raise ValueError("tokenizer pattern must not be empty")
        file = Path(path)
        if kind is None:
            kind = "huggingface" if file.suffix.lower() == ".json" else "tiktoken"
        label = name or file.stem
        tokenizer: TextTokenizer
        if kind == "tiktoken":
            tokenizer = load_tiktoken_file(file, pat_str=pat_str or CL100K_PATTERN, name=label)
        elif kind == "huggingface":
            tokenizer = load_huggingface_file(file, name=label)
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r}")
        with self._lock:
            self._entries.append(_Entry(pattern.strip().lower(), tokenizer))
        return tokenizer

    def lookup(self, model: str) -> TextTokenizer | None:
        """The tokenizer of the first pattern matching ``model``, if any."""
        name = model.strip().lower()
        with self._lock:
            entries = list(self._entries)
        for entry in entries:
            if fnmatch.fnmatchcase(name, entry.pattern):
                return entry.tokenizer
        return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def load_tiktoken_file(path: Path, *, pat_str: str, name: str) -> TiktokenTokenizer:
    """A tiktoken encoding from a local BPE file (never the network)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerFileError(f"tokenizer file {path}: {exc.strerror or exc}") from exc
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerFileError(
                f"tokenizer file {path}, line {number}: expected '<base64> <rank>'"
            )
        try:
            token = base64.b64decode(parts[0], validate=True)
            rank = int(parts[1])
        except (binascii.Error, ValueError) as exc:
            raise TokenizerFileError(f"tokenizer file {path}, line {number}: {exc}") from exc
        if rank < 0 or token in ranks:
            raise TokenizerFileError(f"tokenizer file {path}, line {number}: bad or repeated entry")
        ranks[token] = rank
    if not ranks:
        raise TokenizerFileError(f"tokenizer file {path}: no tokens")
    if len(set(ranks.values())) != len(ranks):
        raise TokenizerFileError(f"tokenizer file {path}: ranks are not unique")
    try:
        encoding = tiktoken.Encoding(
            name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens={}
        )
        encoding.encode_ordinary("probe 123")
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
            raise
        raise TokenizerFileError(f"tokenizer file {path}: unusable ({exc})") from exc
    return TiktokenTokenizer(encoding, name=name, exact=False)


def load_huggingface_file(path: Path, *, name: str) -> HuggingFaceTokenizer:
    """A Hugging Face tokenizer.json; needs the optional ``tokenizers`` package."""
    try:
        module = importlib.import_module("tokenizers")
    except ImportError as exc:
        raise TokenizerUnavailable(
            "Hugging Face tokenizer.json files need the 'tokenizers' package, which is not "
            f"installed; install it or register a tiktoken-format file instead ({path})"
        ) from exc
    if not path.is_file():
        raise TokenizerFileError(f"tokenizer file {path}: no such file")
    try:
        tokenizer = module.Tokenizer.from_file(str(path))
    except Exception as exc:
        raise TokenizerFileError(f"tokenizer file {path}: {exc}") from exc
    return HuggingFaceTokenizer(tokenizer, name)


DEFAULT_REGISTRY = TokenizerRegistry()
