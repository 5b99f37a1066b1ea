"""TokenUsage.check: every range and nesting violation, named by its exact field path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.domain.errors import InvalidArgument, Violations
from metering.domain.usage import TOKENS_PER_RECORD_MAX, TokenUsage

MAX = TOKENS_PER_RECORD_MAX


def fields_of(usage: TokenUsage, prefix: str | None = None) -> list[str]:
    violations = Violations()
    if prefix is None:
        usage.check(violations)  # the default prefix is "usage"
    else:
        usage.check(violations, prefix)
    return [v.field for v in violations.items]


def descriptions_of(usage: TokenUsage) -> list[str]:
    violations = Violations()
    usage.check(violations)
    return [v.description for v in violations.items]


@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(),
        TokenUsage(input_tokens=10, output_tokens=5),
        # every nesting at its limit
        TokenUsage(
            input_tokens=10,
            cache_read_tokens=4,
            cache_write_tokens=6,
            cache_write_1h_tokens=6,
            output_tokens=5,
            reasoning_tokens=5,
        ),
        TokenUsage(input_tokens=10, cache_read_tokens=10),
        TokenUsage(input_tokens=10, cache_write_tokens=10),
        TokenUsage(
            input_tokens=MAX, output_tokens=MAX, cache_read_tokens=MAX, reasoning_tokens=MAX
        ),
    ],
)
def test_valid_usage_has_no_violations(usage: TokenUsage) -> None:
    assert fields_of(usage) == []


@pytest.mark.parametrize(
    ("usage", "fields"),
    [
        (TokenUsage(input_tokens=-1), ["usage.input_tokens"]),
        (TokenUsage(output_tokens=-1), ["usage.output_tokens"]),
        (TokenUsage(cache_read_tokens=-1), ["usage.cache_read_tokens"]),
        (TokenUsage(cache_write_tokens=-1), ["usage.cache_write_tokens"]),
        (TokenUsage(cache_write_1h_tokens=-1), ["usage.cache_write_1h_tokens"]),
        (TokenUsage(reasoning_tokens=-1), ["usage.reasoning_tokens"]),
        (TokenUsage(input_tokens=MAX + 1), ["usage.input_tokens"]),
        (TokenUsage(output_tokens=MAX + 1), ["usage.output_tokens"]),
        (
            TokenUsage(input_tokens=MAX + 1, cache_read_tokens=MAX + 1),
            ["usage.input_tokens", "usage.cache_read_tokens"],
        ),
        # every field out of range at once: all reported, in declaration order
        (
            TokenUsage(-1, -2, -3, -4, -5, -6),
            [
                "usage.input_tokens",
                "usage.output_tokens",
                "usage.cache_read_tokens",
                "usage.cache_write_tokens",
                "usage.cache_write_1h_tokens",
                "usage.reasoning_tokens",
            ],
        ),
    ],
)
def test_out_of_range(usage: TokenUsage, fields: list[str]) -> None:
    assert fields_of(usage) == fields


def test_out_of_range_descriptions() -> None:
    assert descriptions_of(TokenUsage(input_tokens=-1)) == ["input_tokens must not be negative"]
    assert descriptions_of(TokenUsage(output_tokens=MAX + 1)) == [
        f"output_tokens must be at most {MAX}"
    ]


def test_range_violation_skips_nesting_checks() -> None:
    # reasoning > output would be a nesting violation, but a count out of
    # range makes the nesting meaningless: only the range is reported.
    assert fields_of(TokenUsage(input_tokens=-1, reasoning_tokens=5)) == ["usage.input_tokens"]


@pytest.mark.parametrize(
    ("usage", "fields", "needle"),
    [
        (
            TokenUsage(input_tokens=10, cache_read_tokens=11),
            ["usage.cache_read_tokens"],
            "must not exceed input_tokens",
        ),
        (
            TokenUsage(input_tokens=10, cache_write_tokens=11, cache_write_1h_tokens=0),
            ["usage.cache_read_tokens"],  # the sum is reported on cache_read_tokens
            "cache_read_tokens + cache_write_tokens must not exceed input_tokens",
        ),
        (
            TokenUsage(input_tokens=10, cache_read_tokens=6, cache_write_tokens=5),
            ["usage.cache_read_tokens"],
            "must not exceed input_tokens",
        ),
        (
            TokenUsage(input_tokens=10, cache_write_tokens=3, cache_write_1h_tokens=4),
            ["usage.cache_write_1h_tokens"],
            "cache_write_1h_tokens must not exceed cache_write_tokens",
        ),
        (
            TokenUsage(output_tokens=3, reasoning_tokens=4),
            ["usage.reasoning_tokens"],
            "reasoning_tokens must not exceed output_tokens",
        ),
    ],
)
def test_nesting_violations(usage: TokenUsage, fields: list[str], needle: str) -> None:
    violations = Violations()
    usage.check(violations)
    assert [v.field for v in violations.items] == fields
    assert needle in violations.items[0].description


def test_all_nesting_violations_are_reported_together() -> None:
    usage = TokenUsage(
        input_tokens=1,
        cache_read_tokens=1,
        cache_write_tokens=2,
        cache_write_1h_tokens=3,
        output_tokens=0,
        reasoning_tokens=1,
    )
    assert fields_of(usage) == [
        "usage.cache_read_tokens",
        "usage.cache_write_1h_tokens",
        "usage.reasoning_tokens",
    ]


def test_prefix_names_the_record() -> None:
    usage = TokenUsage(input_tokens=-1, output_tokens=1)
    assert fields_of(usage, "records[3].usage") == ["records[3].usage.input_tokens"]
    usage = TokenUsage(output_tokens=1, reasoning_tokens=2)
    assert fields_of(usage, "records[0].usage") == ["records[0].usage.reasoning_tokens"]


def test_violations_are_appended_to_existing_ones() -> None:
    violations = Violations()
    violations.add("account_id", "account_id is required")
    TokenUsage(output_tokens=-1).check(violations)
    assert [v.field for v in violations.items] == ["account_id", "usage.output_tokens"]


def test_raise_if_any_raises_invalid_argument_with_every_violation() -> None:
    violations = Violations()
    TokenUsage(input_tokens=-1, output_tokens=-1).check(violations)
    with pytest.raises(InvalidArgument) as caught:
        violations.raise_if_any()
    assert caught.value.reason == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == [
        "usage.input_tokens",
        "usage.output_tokens",
    ]
    assert caught.value.message == "invalid fields: usage.input_tokens, usage.output_tokens"


def test_raise_if_any_single_violation_uses_its_description() -> None:
    violations = Violations()
    TokenUsage(output_tokens=1, reasoning_tokens=2).check(violations)
    with pytest.raises(InvalidArgument) as caught:
        violations.raise_if_any()
    assert caught.value.message == violations.items[0].description


def test_no_violations_raise_nothing() -> None:
    violations = Violations()
    TokenUsage(input_tokens=1).check(violations)
    violations.raise_if_any()


COUNT = st.integers(min_value=-3, max_value=MAX + 3) | st.integers(min_value=-3, max_value=20)


@given(COUNT, COUNT, COUNT, COUNT, COUNT, COUNT)
def test_check_agrees_with_the_invariants(
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
    cache_write_1h: int,
    reasoning: int,
) -> None:
    usage = TokenUsage(
        input_tokens, output_tokens, cache_read, cache_write, cache_write_1h, reasoning
    )
    counts = [input_tokens, output_tokens, cache_read, cache_write, cache_write_1h, reasoning]
    ok = (
        all(0 <= c <= MAX for c in counts)
        and cache_read + cache_write <= input_tokens
        and cache_write_1h <= cache_write
        and reasoning <= output_tokens
    )
    assert (fields_of(usage) == []) is ok
