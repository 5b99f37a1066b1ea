"""Prices per million tokens, their resolution by model and time, and cost.

A price entry is identified by ``price_id`` and ``version``; every usage record
stores both, so a later change of the price book never silently changes what
a past record cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from metering.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from metering.domain.money import TOKENS_PER_MILLION, round_half_up_div
from metering.domain.usage import TokenUsage

# Dated snapshots ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929") bill as
# their family unless the price book names the snapshot itself.
_DATED_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


@dataclass(frozen=True)
class Rates:
    """Nanos per million tokens for each token kind.

    A rate left as None falls back: cache reads and writes to ``input``, the
    one-hour cache write to the five-minute one, reasoning to ``output``.
    """

    input: int
    output: int
    cache_read: int | None = None
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    reasoning: int | None = None

    def cost_scaled(self, usage: TokenUsage) -> int:
        """The exact cost in units of 1e-15 (nanos times one million); not yet rounded."""
        cache_read = self.input if self.cache_read is None else self.cache_read
        write_5m = self.input if self.cache_write_5m is None else self.cache_write_5m
        write_1h = write_5m if self.cache_write_1h is None else self.cache_write_1h
        reasoning = self.output if self.reasoning is None else self.reasoning
        uncached_input = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        write_5m_tokens = usage.cache_write_tokens - usage.cache_write_1h_tokens
        plain_output = usage.output_tokens - usage.reasoning_tokens
        return (
            uncached_input * self.input
            + usage.cache_read_tokens * cache_read
            + write_5m_tokens * write_5m
            + usage.cache_write_1h_tokens * write_1h
            + plain_output * self.output
            + usage.reasoning_tokens * reasoning
        )


@dataclass(frozen=True)
class LongContextTier:
    """Rates that replace the base rates when a prompt exceeds the threshold."""

    threshold_input_tokens: int
    rates: Rates


@dataclass(frozen=True)
class Price:
    """One effective-dated price entry of the price book."""

    price_id: str
    version: int
    provider: str
    model: str
    currency_code: str
    effective_time_us: int
    rates: Rates
    end_time_us: int | None = None
    aliases: tuple[str, ...] = ()
    request_fee_nanos: int = 0
    long_context: LongContextTier | None = None
    source: str = ""
    source_date: str = ""

    def rates_for(self, usage: TokenUsage) -> Rates:
        """Long-context prices apply to the whole call when its prompt exceeds the threshold."""
        tier = self.long_context
        if tier is not None and usage.input_tokens > tier.threshold_input_tokens:
            return tier.rates
        return self.rates

    def token_cost_nanos(self, usage: TokenUsage) -> int:
        """Token cost of one call, rounded once with the one rounding rule."""
        return round_half_up_div(self.rates_for(usage).cost_scaled(usage), TOKENS_PER_MILLION)

    def in_force_at(self, time_us: int) -> bool:
        return self.effective_time_us <= time_us and (
            self.end_time_us is None or time_us < self.end_time_us
        )


def normalize_model(model: str) -> str:
    return model.strip().lower()


@dataclass
class PriceBook:
    """Resolves (provider, model, currency, time) to the price in force."""

    _by_name: dict[str, list[Price]] = field(default_factory=dict)

    @staticmethod
    def of(prices: Iterable[Price]) -> PriceBook:
        book = PriceBook()
        for price in prices:
            for name in (price.model, *price.aliases):
                book._by_name.setdefault(normalize_model(name), []).append(price)
        return book

    def __len__(self) -> int:
        return len({(p.price_id, p.version) for ps in self._by_name.values() for p in ps})

    def _candidates(self, provider: str, model: str) -> list[Price]:
        name = normalize_model(model)
        provider = provider.strip().lower()
        # "openai/gpt-4o" (the OpenRouter spelling) names the provider in the model.
        if "/" in name and (not provider or name.startswith(provider + "/")):
            prefix, _, rest = name.partition("/")
            known = [
                *self._by_name.get(rest, []),
                *self._by_name.get(_DATED_SUFFIX.sub("", rest), []),
            ]
            if any(p.provider == prefix for p in known):
                provider, name = prefix, rest
        for candidate in (name, _DATED_SUFFIX.sub("", name)):
            prices = self._by_name.get(candidate, [])
            if provider:
                prices = [p for p in prices if p.provider == provider]
            if prices:
                return prices
        return []

    def resolve(self, provider: str, model: str, currency_code: str, at_us: int) -> Price:
        """The price in force at ``at_us``: the latest effective time, then the highest version.

        Raises FailedPrecondition(PRICE_NOT_FOUND) when there is none, and
        InvalidArgument on ``provider`` when several providers price the model.
        """
        prices = [
            p
            for p in self._candidates(provider, model)
            if p.currency_code == currency_code and p.in_force_at(at_us)
        ]
        if not prices:
            raise FailedPrecondition(
                "PRICE_NOT_FOUND",
                f"no price for model {model!r} (provider {provider or 'any'!r}) "
                f"in {currency_code} at the record's event time",
                {"model": model[:128], "provider": provider[:64], "currency_code": currency_code},
            )
        providers = {p.provider for p in prices}
        if len(providers) > 1:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "provider",
                        f"model {model!r} is priced by several providers "
                        f"({', '.join(sorted(providers))}); name the provider",
                    )
                ]
            )
        return max(prices, key=lambda p: (p.effective_time_us, p.version))
