"""Accuracy of metering's prompt-token counts against provider-reported counts.

Reads every case of tests/data/token_corpus/*.json (a real request body and
the prompt tokens the provider reported for it, with its public source) and
prints, per provider, subset and model family: the number of cases, the rate
of exact matches and the mean absolute percentage error of

* metering: ``metering.tokens.formats.count_request``;
* chars/4: the characters of every string of the body except ``model``, / 4;
* cookbook: ``num_tokens_from_messages`` of OpenAI's cookbook ("How to count
  tokens with tiktoken": 3 tokens per message, 1 per name, 3 for the reply),
  applied to the messages of the body; values that are not strings (tool
  calls, content parts) are encoded as their JSON, since the cookbook's
  function only takes strings; non-OpenAI models use o200k_base, as the
  cookbook does for unknown models.

Run: ``python bench/token_accuracy.py`` (``--cases`` also lists every case).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metering.tokens.counter import encoding_name_for
from metering.tokens.formats import RequestFormat, count_request
from metering.tokens.vocab import get_encoding

CORPUS = ROOT / "tests" / "data" / "token_corpus"


@dataclass(frozen=True)
class Result:
    case_id: str
    provider: str
    subset: str
    family: str
    reported: int
    metering: int
    chars4: int
    cookbook: int


def load_cases(directory: Path = CORPUS) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        cases.extend(data if isinstance(data, list) else [data])
    return cases


_FAMILIES = (
    (r"^gpt-4o-mini", "gpt-4o-mini"),
    (r"^gpt-4o", "gpt-4o"),
    (r"^gpt-4\.1", "gpt-4.1"),
    (r"^gpt-4", "gpt-4"),
    (r"^gpt-3\.5", "gpt-3.5"),
    (r"^o\d", "o-series"),
    (r"^gpt-5", "gpt-5"),
    (r"^claude-3", "claude-3"),
    (r"^claude-(sonnet|opus|haiku)-4", "claude-4.x"),
    (r"^gemini-2\.0", "gemini-2.0"),
    (r"^gemini-2\.5", "gemini-2.5"),
)


def family(model: str) -> str:
    for pattern, name in _FAMILIES:
        if re.search(pattern, model):
            return name
    return model


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)


def chars_over_four(request: dict[str, Any]) -> int:
    chars = sum(
        len(text) for key, value in request.items() if key != "model" for text in _strings(value)
    )
    return math.ceil(chars / 4)


def _messages(request: dict[str, Any], fmt: RequestFormat) -> list[dict[str, Any]]:
    """The request's messages as the cookbook function expects them."""
    if fmt is RequestFormat.OPENAI_CHAT_COMPLETIONS:
        return list(request.get("messages", []))
    if fmt is RequestFormat.OPENAI_RESPONSES:
        messages: list[dict[str, Any]] = []
        if isinstance(request.get("instructions"), str):
            messages.append({"role": "developer", "content": request["instructions"]})
        items = request.get("input")
        if isinstance(items, str):
            messages.append({"role": "user", "content": items})
        else:
            messages.extend(items or [])
        return messages
    if fmt is RequestFormat.ANTHROPIC_MESSAGES:
        system = request.get("system")
        head = [{"role": "system", "content": system}] if system else []
        return head + list(request.get("messages", []))
    system_instruction = request.get("systemInstruction")
    head = [{"role": "system", "content": system_instruction}] if system_instruction else []
    return head + list(request.get("contents", []))


def num_tokens_from_messages(messages: list[dict[str, Any]], model: str) -> int:
    """OpenAI cookbook's method (tokens_per_message=3, tokens_per_name=1, +3)."""
    encoding = get_encoding(encoding_name_for(model) or "o200k_base")
    tokens_per_message, tokens_per_name = 3, 1
    num_tokens = 0
    for message in messages:
        num_tokens += tokens_per_message
        for key, value in message.items():
            text = value if isinstance(value, str) else json.dumps(value)
            num_tokens += len(encoding.encode(text, disallowed_special=()))
            if key == "name":
                num_tokens += tokens_per_name
    num_tokens += 3  # every reply is primed with <|start|>assistant<|message|>
    return num_tokens


def evaluate(cases: list[dict[str, Any]]) -> list[Result]:
    results: list[Result] = []
    for case in cases:
        fmt = RequestFormat(case["format"])
        request = case["request"]
        sizes = {url: tuple(size) for url, size in case.get("image_sizes", {}).items()}
        counted = count_request(case["model"], json.dumps(request).encode(), fmt, sizes or None)
        results.append(
            Result(
                case_id=case["id"],
                provider=case["provider"],
                subset=case["subset"],
                family=family(case["model"]),
                reported=case["reported_prompt_tokens"],
                metering=counted.input_tokens,
                chars4=chars_over_four(request),
                cookbook=num_tokens_from_messages(_messages(request, fmt), case["model"]),
            )
        )
    return results


def mape(results: list[Result], attribute: str) -> float:
    errors = [abs(getattr(r, attribute) - r.reported) / r.reported for r in results]
    return 100 * sum(errors) / len(errors)


def exact_rate(results: list[Result]) -> float:
    return 100 * sum(r.metering == r.reported for r in results) / len(results)


def table(results: list[Result]) -> str:
    groups: dict[tuple[str, str, str], list[Result]] = defaultdict(list)
    for result in results:
        groups[(result.provider, result.subset, result.family)].append(result)
        groups[(result.provider, result.subset, "(all)")].append(result)
        groups[(result.provider, "(all)", "(all)")].append(result)
    header = (
        f"{'provider':<10} {'subset':<18} {'family':<12} {'n':>3} {'exact':>7} "
        f"{'metering':>9} {'chars/4':>9} {'cookbook':>9}"
    )
    lines = [header, "-" * len(header)]
    for key in sorted(groups, key=lambda k: (k[0], k[1] == "(all)", k[1], k[2] == "(all)", k[2])):
        rows = groups[key]
        lines.append(
            f"{key[0]:<10} {key[1]:<18} {key[2]:<12} {len(rows):>3} {exact_rate(rows):>6.1f}% "
            f"{mape(rows, 'metering'):>8.2f}% {mape(rows, 'chars4'):>8.2f}% "
            f"{mape(rows, 'cookbook'):>8.2f}%"
        )
    lines.append("")
    lines.append("exact: share of cases counted exactly; other columns: mean absolute % error")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", action="store_true", help="also list every case")
    args = parser.parse_args(argv)
    results = evaluate(load_cases())
    print(f"{len(results)} cases from {CORPUS.relative_to(ROOT)}\n")
    print(table(results))
    if args.cases:
        print()
        for r in results:
            print(
                f"{r.metering - r.reported:+6d} metering={r.metering:<6d} "
                f"reported={r.reported:<6d} {r.provider:<9} {r.subset:<17} {r.case_id}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
