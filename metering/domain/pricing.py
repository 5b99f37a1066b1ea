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
    """One effective-dated price entry of the price book.

    ``model`` is an exact name or a glob pattern (``*`` matches any run of
    characters, e.g. ``@cf/meta/*``). A version with ``retired`` set is a
    tombstone: from its effective time on, the price id prices nothing.
    ``account_id`` scopes an entry to one account (an override); "" is the
    list price.
    """

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
    account_id: str = ""
    # The per-request price of REQUEST and HYBRID billing, in money and/or credits.
    request_price_nanos: int | None = None
    request_credits: int | None = None
    # Basis points off for batch calls (5000 = the usual 50%).
    batch_discount_bps: int = 0
    retired: bool = False

    @property
    def is_pattern(self) -> bool:
        return "*" in self.model

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


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in normalize_model(pattern).split("*")))


@dataclass
class PriceBook:
    """Resolves (provider, model, currency, time, account) to the price in force.

    Precedence: an exact name or alias, then the name without a dated
    suffix, then the most specific matching pattern (the most literal
    characters). Within those, an account's own entries win over list
    prices; then the latest effective time; then the highest version. If the
    highest version of a price id in force is retired, that id prices nothing.
    """

    _by_name: dict[str, list[Price]] = field(default_factory=dict)
    _patterns: list[tuple[re.Pattern[str], int, Price]] = field(default_factory=list)
    _count: int = 0
    # The database's price revision this book was loaded at (0: not from a database).
    revision: int = 0

    @staticmethod
    def of(prices: Iterable[Price]) -> PriceBook:
        book = PriceBook()
        for price in prices:
            book._count += 1
            if price.is_pattern:
                literal = len(price.model.replace("*", ""))
                book._patterns.append((_pattern_regex(price.model), literal, price))
                continue
            for name in (price.model, *price.aliases):
                book._by_name.setdefault(normalize_model(name), []).append(price)
        book._patterns.sort(key=lambda item: -item[1])
        return book

    def __len__(self) -> int:
        return self._count

    def all(self) -> list[Price]:
        seen: dict[tuple[str, int], Price] = {}
        for prices in self._by_name.values():
            for price in prices:
                seen[(price.price_id, price.version)] = price
        for _, _, price in self._patterns:
            seen[(price.price_id, price.version)] = price
        return [seen[key] for key in sorted(seen)]

    def _named(self, name: str, provider: str) -> list[Price]:
        prices = self._by_name.get(name, [])
        return [p for p in prices if p.provider == provider] if provider else prices

    def _candidate_sets(self, provider: str, model: str) -> list[list[Price]]:
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
        sets = [self._named(name, provider), self._named(_DATED_SUFFIX.sub("", name), provider)]
        for literal in sorted({length for _, length, _ in self._patterns}, reverse=True):
            sets.append(
                [
                    p
                    for regex, length, p in self._patterns
                    if length == literal
                    and (not provider or p.provider == provider)
                    and regex.fullmatch(name)
                ]
            )
        return sets

    def find(
        self, provider: str, model: str, currency_code: str, at_us: int, account_id: str = ""
    ) -> Price | None:
        """The price in force, or None; InvalidArgument when several providers price it."""
        for candidates in self._candidate_sets(provider, model):
            in_force = [
                p
                for p in candidates
                if p.currency_code == currency_code
                and p.in_force_at(at_us)
                and p.account_id in ("", account_id)
            ]
            newest: dict[str, Price] = {}
            for price in in_force:
                current = newest.get(price.price_id)
                if current is None or price.version > current.version:
                    newest[price.price_id] = price
            live = [p for p in newest.values() if not p.retired]
            if not live:
                continue
            own = [p for p in live if p.account_id]
            live = own or live
            providers = {p.provider for p in live}
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
            return max(live, key=lambda p: (p.effective_time_us, p.version))
        return None

    def resolve(
        self, provider: str, model: str, currency_code: str, at_us: int, account_id: str = ""
    ) -> Price:
        """Like :meth:`find`, but FailedPrecondition(PRICE_NOT_FOUND) when there is no price."""
        price = self.find(provider, model, currency_code, at_us, account_id)
        if price is None:
            raise price_not_found(provider, model, currency_code)
        return price


def price_not_found(provider: str, model: str, currency_code: str) -> FailedPrecondition:
    return FailedPrecondition(
        "PRICE_NOT_FOUND",
        f"no price for model {model!r} (provider {provider or 'any'!r}) "
        f"in {currency_code} at the record's event time",
        {"model": model[:128], "provider": provider[:64], "currency_code": currency_code},
    )
