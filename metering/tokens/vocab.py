"""Vendored tiktoken vocabularies, checked by sha256 and loaded lazily once.

tiktoken's own ``get_encoding`` downloads vocabularies on first use; the
service must never reach the network at run time, so encodings are built here
from the files in ``metering/tokens/vocab/`` with the split patterns and
special tokens of ``tiktoken_ext.openai_public``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from importlib import resources

import tiktoken

# The hashes are the ones tiktoken itself expects for these files.
_VOCAB_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

_HARMONY_SPECIAL_TOKENS: dict[str, int] = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
} | {f"<|reserved_{i}|>": i for i in range(200013, 201088)}

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


class VocabularyError(RuntimeError):
    """A vendored vocabulary file is missing or does not match its sha256."""


def _load_ranks(name: str) -> dict[bytes, int]:
    data = resources.files("metering.tokens").joinpath("vocab", f"{name}.tiktoken").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _VOCAB_SHA256[name]:
        raise VocabularyError(
            f"vocabulary {name}: sha256 {digest} != expected {_VOCAB_SHA256[name]}"
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _build(name: str) -> tiktoken.Encoding:
    if name == "cl100k_base":
        return tiktoken.Encoding(
            name=name,
            pat_str=CL100K_PATTERN,
            mergeable_ranks=_load_ranks(name),
            special_tokens={
                "<|endoftext|>": 100257,
                "<|fim_prefix|>": 100258,
                "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260,
                "<|endofprompt|>": 100276,
            },
        )
    if name == "o200k_base":
        return tiktoken.Encoding(
            name=name,
            pat_str=O200K_PATTERN,
            mergeable_ranks=_load_ranks(name),
            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        )
    if name == "o200k_harmony":
        # gpt-oss: the o200k_base ranks and pattern plus the harmony chat tokens.
        base = _encodings.get("o200k_base")
        if base is None:
            base = _encodings["o200k_base"] = _build("o200k_base")
        return tiktoken.Encoding(
            name=name,
            pat_str=O200K_PATTERN,
            mergeable_ranks=base._mergeable_ranks,
            special_tokens=_HARMONY_SPECIAL_TOKENS,
        )
    raise KeyError(name)


def warm_up() -> None:
    """Build the common encodings now, so that the first estimate is not slow."""
    for name in ("o200k_base", "cl100k_base"):
        get_encoding(name)


def get_encoding(name: str) -> tiktoken.Encoding:
    """The named encoding, built from the vendored file on first use (thread-safe)."""
    encoding = _encodings.get(name)
    if encoding is None:
        with _lock:
            encoding = _encodings.get(name)
            if encoding is None:
                encoding = _encodings[name] = _build(name)
    return encoding
