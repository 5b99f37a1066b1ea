"""Convert LiteLLM's ``model_prices_and_context_window.json`` into catalogue entries.

LiteLLM prices are per token, as JSON numbers (``1.5e-07``). The caller must
parse the file with ``json.loads(text, parse_float=Decimal)`` so that each
number keeps its exact decimal value; multiplying by a million then gives
the per-million decimal string of the catalogue format without any float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Text-token models; embeddings, images, audio and rerankers are not metered
# per prompt/completion token here.
_TEXT_MODES = frozenset({"chat", "completion", "responses"})
# LiteLLM's provider names that differ from metering's.
_PROVIDERS = {
    "gemini": "google",
    "vertex_ai-language-models": "google",
    "text-completion-openai": "openai",
    "cloudflare": "cloudflare",
}
_RATES = {
    "input_cost_per_token": "input_per_million",
    "output_cost_per_token": "output_per_million",
    "cache_read_input_token_cost": "cache_read_per_million",
    "cache_creation_input_token_cost": "cache_write_5m_per_million",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h_per_million",
    "output_cost_per_reasoning_token": "reasoning_per_million",
}
# Long-context prices: LiteLLM names them by threshold.
_TIERS = {"_above_200k_tokens": 200_000, "_above_128k_tokens": 128_000}


@dataclass
class Conversion:
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: int = 0


def looks_like_litellm(data: Any) -> bool:
    """LiteLLM's file is an object of model name -> object with ``*_cost_per_token``."""
    if not isinstance(data, dict) or "prices" in data:
        return False
    return any(
        isinstance(v, dict) and ("input_cost_per_token" in v or "litellm_provider" in v)
        for v in data.values()
    )


def _per_million(value: Any, where: str, problems: list[str]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        problems.append(f"{where}: must be a number, got {type(value).__name__}")
        return None
    amount = Decimal(value) * 1_000_000
    if not amount.is_finite() or amount < 0:
        problems.append(f"{where}: must be a finite non-negative number")
        return None
    text = format(amount.normalize(), "f")
    return text


def convert_litellm(
    data: dict[str, Any], source: str, effective_time: str, source_date: str
) -> Conversion:
    """Entries in the catalogue format, every problem (entry and field named), skipped count."""
    result = Conversion()
    for name, spec in data.items():
        where = f"{name!r}"
        if name == "sample_spec":  # LiteLLM's documentation entry
            result.skipped += 1
            continue
        if not isinstance(spec, dict):
            result.problems.append(f"{where}: must be an object")
            continue
        if spec.get("mode", "chat") not in _TEXT_MODES:
            result.skipped += 1
            continue
        provider_raw = spec.get("litellm_provider")
        if not isinstance(provider_raw, str) or not provider_raw:
            result.problems.append(f"{where}.litellm_provider: required string")
            continue
        problems_before = len(result.problems)
        provider = _PROVIDERS.get(provider_raw, provider_raw).lower()
        model = name.split("/", 1)[1] if name.startswith(provider_raw + "/") else name
        entry: dict[str, Any] = {
            "price_id": f"{provider}/{model}".lower(),
            "version": 1,
            "provider": provider,
            "model": model,
            "effective_time": effective_time,
            "source": source,
            "source_date": source_date,
        }
        for key, target in _RATES.items():
            if spec.get(key) is not None:
                value = _per_million(spec[key], f"{where}.{key}", result.problems)
                if value is not None:
                    entry[target] = value
        for missing in ("input_cost_per_token", "output_cost_per_token"):
            if spec.get(missing) is None:
                result.problems.append(
                    f"{where}.{missing}: required for a {spec.get('mode', 'chat')} model"
                )
        for suffix, threshold in _TIERS.items():
            tier: dict[str, Any] = {}
            for key, target in _RATES.items():
                if spec.get(key + suffix) is not None:
                    value = _per_million(
                        spec[key + suffix], f"{where}.{key}{suffix}", result.problems
                    )
                    if value is not None:
                        tier[target] = value
            if tier:
                # A tier must price input and output; the rest falls back like the base.
                tier.setdefault("input_per_million", entry.get("input_per_million", "0"))
                tier.setdefault("output_per_million", entry.get("output_per_million", "0"))
                entry["long_context"] = {"threshold_input_tokens": threshold, **tier}
                break
        if spec.get("input_cost_per_request") is not None:
            fee = spec["input_cost_per_request"]
            if isinstance(fee, bool) or not isinstance(fee, (int, Decimal)) or fee < 0:
                result.problems.append(
                    f"{where}.input_cost_per_request: must be a non-negative number"
                )
            else:
                entry["request_fee"] = format(Decimal(fee).normalize(), "f")
        # An entry with problems is reported once, not again by the catalogue check.
        if len(result.problems) == problems_before:
            result.entries.append(entry)
    return result
