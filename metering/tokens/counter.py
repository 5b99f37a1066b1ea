"""Count tokens of text for a model: exact for OpenAI models, approximate otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from metering.tokens.registry import TokenizerRegistry
from metering.tokens.vocab import get_encoding

# Longest prefix wins; OpenAI names model families by prefix.
_OPENAI_ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-oss", "o200k_base"),  # o200k_harmony: o200k_base plus chat special tokens.
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-6", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex-", "o200k_base"),
    ("computer-use", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

# Without the provider's tokenizer, about four characters of English make a
# token; the token-counting work calibrates this per family.
APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx-chars-per-token"


@dataclass(frozen=True)
class TextCount:
    tokens: int
    exact: bool
    tokenizer: str


def encoding_name_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model, or None for other models."""
    name = model.strip().lower()
    if name.startswith("openai/"):
        name = name.removeprefix("openai/")
    best: tuple[int, str] | None = None
    for prefix, encoding in _OPENAI_ENCODINGS:
        if name.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), encoding)
    return best[1] if best else None


def count_text(model: str, text: str, registry: TokenizerRegistry | None = None) -> TextCount:
    """Tokens of ``text`` as plain content (special-token strings count as ordinary text).

    An operator's registered tokenizer for the model wins; then OpenAI's
    encodings; then the approximation.
    """
    if registry is not None:
        tokenizer = registry.lookup(model)
        if tokenizer is not None:
            return TextCount(tokenizer.count(text), tokenizer.exact, tokenizer.name)
    encoding_name = encoding_name_for(model)
    if encoding_name is None:
        tokens = -(-len(text) // APPROX_CHARS_PER_TOKEN)
        return TextCount(tokens, exact=False, tokenizer=APPROX_TOKENIZER)
    if not text:
        return TextCount(0, exact=True, tokenizer=encoding_name)
    return TextCount(
        len(get_encoding(encoding_name).encode_ordinary(text)),
        exact=True,
        tokenizer=encoding_name,
    )
