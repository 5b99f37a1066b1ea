"""Token usage normalized across providers, and its invariants."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from metering_client._extraction.errors import Violations

# One LLM call never comes near this; it bounds sums and rejects garbage.
TOKENS_PER_RECORD_MAX = 100_000_000


class UsageSource(enum.Enum):
    """How the service knows a record's token counts."""

    REPORTED = "REPORTED"
    ESTIMATED = "ESTIMATED"
    MISSING = "MISSING"
    # Superseded by a later authoritative figure: the call's numbers as corrected.
    CORRECTED = "CORRECTED"


# The counts of a TokenUsage, in declaration order (for sums and differences).
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True)
class TokenUsage:
    """Usage of one call. Counts nest: see ``proto/metering/v1/types.proto``.

    ``cache_read_tokens`` and ``cache_write_tokens`` are parts of
    ``input_tokens``; ``cache_write_1h_tokens`` is part of
    ``cache_write_tokens``; ``reasoning_tokens`` is part of ``output_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    def plus(self, other: TokenUsage) -> TokenUsage:
        """Count by count sum (adjustment rows carry negative counts)."""
        return TokenUsage(**{n: getattr(self, n) + getattr(other, n) for n in TOKEN_FIELDS})

    def minus(self, other: TokenUsage) -> TokenUsage:
        """Count by count difference: what moves ``other`` to ``self``."""
        return TokenUsage(**{n: getattr(self, n) - getattr(other, n) for n in TOKEN_FIELDS})

    def check(self, violations: Violations, prefix: str = "usage") -> None:
        """Add a violation for every count out of range or breaking the nesting."""
        counts = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }
        in_range = True
        for name, value in counts.items():
            if value < 0:
                violations.add(f"{prefix}.{name}", f"{name} must not be negative")
                in_range = False
            elif value > TOKENS_PER_RECORD_MAX:
                violations.add(
                    f"{prefix}.{name}", f"{name} must be at most {TOKENS_PER_RECORD_MAX}"
                )
                in_range = False
        if not in_range:
            return
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            violations.add(
                f"{prefix}.cache_read_tokens",
                "cache_read_tokens + cache_write_tokens must not exceed input_tokens "
                "(input_tokens is the whole prompt, cached parts included)",
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            violations.add(
                f"{prefix}.cache_write_1h_tokens",
                "cache_write_1h_tokens must not exceed cache_write_tokens",
            )
        if self.reasoning_tokens > self.output_tokens:
            violations.add(
                f"{prefix}.reasoning_tokens",
                "reasoning_tokens must not exceed output_tokens (they are part of the completion)",
            )
