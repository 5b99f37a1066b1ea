"""Token counting: vendored tiktoken vocabularies, model -> encoding, no network ever."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public as openai_public
from hypothesis import given
from hypothesis import strategies as st

from metering.tokens import vocab
from metering.tokens.counter import APPROX_TOKENIZER, TextCount, count_text, encoding_name_for
from metering.tokens.vocab import VocabularyError, get_encoding


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("token counting must not download or open connections")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way tiktoken (or anything) could fetch a vocabulary raises."""
    monkeypatch.setattr(tiktoken.load, "read_file", _no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", _no_network)
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", _no_network)
    monkeypatch.setattr(tiktoken.registry, "get_encoding", _no_network)
    monkeypatch.setattr(tiktoken, "get_encoding", _no_network)
    monkeypatch.setattr(tiktoken, "encoding_for_model", _no_network)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    # Forget encodings built by earlier tests: this test must load from the vendored files.
    monkeypatch.setattr(vocab, "_encodings", {})


# --- exact ids ---------------------------------------------------------------


@pytest.mark.usefixtures("offline")
def test_cl100k_known_ids() -> None:
    # The example of tiktoken's README.
    assert get_encoding("cl100k_base").encode_ordinary("tiktoken is great!") == [
        83,
        1609,
        5963,
        374,
        2294,
        0,
    ]
    assert get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]


@pytest.mark.usefixtures("offline")
def test_o200k_known_ids() -> None:
    assert get_encoding("o200k_base").encode_ordinary("tiktoken is great!") == [
        83,
        8251,
        2488,
        382,
        2212,
        0,
    ]
    assert get_encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("model", "text", "tokens", "tokenizer"),
    [
        ("gpt-4", "tiktoken is great!", 6, "cl100k_base"),
        ("gpt-4o", "tiktoken is great!", 6, "o200k_base"),
        ("gpt-4o", "hello world", 2, "o200k_base"),
        ("gpt-3.5-turbo", "hello world", 2, "cl100k_base"),
        ("gpt-5", "", 0, "o200k_base"),
        ("gpt-4", "", 0, "cl100k_base"),
    ],
)
def test_count_text_exact(model: str, text: str, tokens: int, tokenizer: str) -> None:
    assert count_text(model, text) == TextCount(tokens, exact=True, tokenizer=tokenizer)


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_vendored_encoding_matches_tiktoken_definition(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pattern and special tokens are the ones tiktoken_ext.openai_public defines."""
    vendored = get_encoding(name)
    requested: list[tuple[str, str | None]] = []

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        requested.append((url, expected_hash))
        return vendored._mergeable_ranks

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    definition = openai_public.ENCODING_CONSTRUCTORS[name]()
    assert vendored.name == definition["name"]
    assert vendored._pat_str == definition["pat_str"]
    assert vendored._special_tokens == definition["special_tokens"]
    # The sha256 the vendored file is checked against is the one tiktoken expects.
    assert [h for _, h in requested] == [vocab._VOCAB_SHA256[name]]
    assert requested[0][0].endswith(f"/{name}.tiktoken")
    assert len(vendored._mergeable_ranks) > 100_000


def test_encodings_are_cached() -> None:
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")
    assert get_encoding("o200k_base") is not get_encoding("cl100k_base")


def test_unknown_encoding_name() -> None:
    with pytest.raises(KeyError):
        get_encoding("p50k_base")


# --- model -> encoding --------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-pro", "o200k_base"),
        ("o3", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o3-pro", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("gpt-5.2-pro", "o200k_base"),
        ("gpt-oss-120b", "o200k_base"),
        ("gpt-oss-20b", "o200k_base"),
        ("codex-mini-latest", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("OpenAI/GPT-4o", "o200k_base"),
        (" gpt-4o ", "o200k_base"),
        ("openai/gpt-oss-120b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("GPT-3.5-TURBO", "cl100k_base"),
        ("openai/gpt-4", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("claude-3-5-haiku-latest", None),
        ("claude-opus-4-20250514", None),
        ("anthropic/claude-sonnet-4-5", None),
        ("gemini-2.5-pro", None),
        ("gemini-2.0-flash", None),
        ("google/gemini-2.5-pro", None),
        ("deepseek-v4-pro", None),
        ("mistral-large-2512", None),
        ("llama-3.3-70b", None),
        ("", None),
    ],
)
def test_encoding_name_for(model: str, encoding: str | None) -> None:
    assert encoding_name_for(model) == encoding


# --- never the network ---------------------------------------------------------


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-5", "gpt-oss-120b", "claude-sonnet-4-5"])
def test_counting_never_touches_the_network(model: str) -> None:
    assert vocab._encodings == {}
    result = count_text(model, "The quick brown fox jumps over the lazy dog.")
    assert result.tokens > 0
    expected = encoding_name_for(model)
    assert set(vocab._encodings) == (set() if expected is None else {expected})


# --- corrupted vocabulary ------------------------------------------------------


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(("name", "model"), [("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")])
def test_corrupted_vocabulary_raises(
    name: str, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(vocab._VOCAB_SHA256, name, "0" * 64)
    with pytest.raises(VocabularyError, match=name):
        get_encoding(name)
    with pytest.raises(VocabularyError):
        count_text(model, "hello")
    # Nothing half-built is cached.
    assert name not in vocab._encodings


# --- odd text never raises -------------------------------------------------------

ODD_TEXTS = [
    "\U0001f600",  # grinning face
    "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family (ZWJ sequence)
    "\U0001f1fa\U0001f1f3",  # flag (regional indicators)
    "\U0001f44d\U0001f3fd",  # thumbs up, skin tone modifier
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",  # Arabic (RTL)
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew (RTL)
    "abc \u202eoverride\u202c def",  # RTL override and pop
    "e\u0301\u0301\u0301\u0301",  # stacked combining acute accents
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e",  # "zalgo"
    "\u1100\u1161\u11a8",  # Hangul jamo (decomposed)
    "\u4f60\u597d\uff0c\u4e16\u754c",  # Chinese with a full-width comma
    "<|endoftext|>",
    "<|endofprompt|>",
    "<|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>",
    "before <|endoftext|> after",
    "\x00\x01\x7f",
    "\ufeffBOM",
    "\ufffd replacement",
    "\U0010ffff private plane",
    "line\r\nbreaks\n\n\t tabs   ",
    " " * 1000,
    "a" * 10_000,
    "\U0001f600" * 500,
]


@pytest.mark.parametrize("text", ODD_TEXTS)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-sonnet-4-5", "gemini-2.5-pro"])
def test_odd_text_never_raises(model: str, text: str) -> None:
    result = count_text(model, text)
    assert result.tokens >= 1
    name = encoding_name_for(model)
    if name is not None:
        assert result.exact
        # Plain content: decoding the ordinary encoding gives the text back.
        encoding = get_encoding(name)
        assert encoding.decode(encoding.encode_ordinary(text)) == text


@pytest.mark.parametrize(("name", "model"), [("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")])
def test_special_token_strings_count_as_plain_text(name: str, model: str) -> None:
    encoding = get_encoding(name)
    special = encoding.encode("<|endoftext|>", allowed_special="all")
    assert len(special) == 1
    ordinary = encoding.encode_ordinary("<|endoftext|>")
    assert special[0] not in ordinary
    assert count_text(model, "<|endoftext|>").tokens == len(ordinary) > 1


@given(st.text(max_size=200))
def test_arbitrary_text_round_trips(text: str) -> None:
    for model in ("gpt-4o", "gpt-4"):
        result = count_text(model, text)
        encoding = get_encoding(result.tokenizer)
        tokens = encoding.encode_ordinary(text)
        assert result.tokens == len(tokens)
        assert encoding.decode(tokens) == text
        assert result.tokens <= len(text.encode("utf-8"))


# --- approximate counts ----------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-3-5-haiku", "gemini-2.5-pro", "x"])
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("abc", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("abcdefgh", 2),
        ("abcdefghi", 3),
        ("\U0001f600", 1),  # one code point
        ("\U0001f600" * 5, 2),
        ("e\u0301" * 2, 1),  # four code points
    ],
)
def test_approximate_is_ceil_of_characters_over_four(model: str, text: str, tokens: int) -> None:
    assert count_text(model, text) == TextCount(tokens, exact=False, tokenizer=APPROX_TOKENIZER)


@given(st.text(max_size=500))
def test_approximate_property(text: str) -> None:
    result = count_text("claude-sonnet-4-5", text)
    assert result.tokens == -(-len(text) // 4)
    assert (result.exact, result.tokenizer) == (False, APPROX_TOKENIZER)
