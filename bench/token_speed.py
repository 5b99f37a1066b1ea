"""Speed of count_request against a bare tiktoken encode of the same text.

For prompts of about 10 KB and 100 KB of English-like text, times (median of
repeats, time.perf_counter) ``count_request`` on an OpenAI chat body holding
the prompt and ``encoding.encode_ordinary`` of the prompt alone, and prints
the throughput ratio encode_time / count_time (1.0 = no overhead; target
>= 0.8).

Run: ``python bench/token_speed.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metering.tokens.formats import RequestFormat, count_request
from metering.tokens.vocab import get_encoding

_TEXT = (
    "the quick brown fox jumps over lazy dog metering ledger token price request account "
    "balance usage model prompt cache output input tool function schema image relay gateway "
    "2024 42 3.14 hello world, (parenthesis) [bracket] {brace} naïve café über straße"
)
_WORDS = _TEXT.split()


def prompt_of(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word += "."
        if rng.random() < 0.02:
            word += "\n"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def median_seconds(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median times of two functions, run alternately so that drift hits both alike."""
    first()  # warm up (vocabulary load, caches)
    second()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for function, bucket in ((first, samples[0]), (second, samples[1])):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=101)
    parser.add_argument("--model", default="gpt-4o")
    args = parser.parse_args(argv)
    encoding = get_encoding("o200k_base")
    print(f"model {args.model}, median of {args.repeats} runs\n")
    print(f"{'prompt':>8} {'tokens':>7} {'encode ms':>10} {'count_request ms':>17} {'ratio':>6}")
    worst = float("inf")
    for size in (10_000, 100_000):
        text = prompt_of(size)
        body = json.dumps(
            {
                "model": args.model,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": text},
                ],
            }
        ).encode()
        tokens = len(encoding.encode_ordinary(text))
        encode_s, count_s = median_seconds(
            lambda text=text: encoding.encode_ordinary(text),
            lambda body=body: count_request(
                args.model, body, RequestFormat.OPENAI_CHAT_COMPLETIONS
            ),
            args.repeats,
        )
        ratio = encode_s / count_s
        worst = min(worst, ratio)
        print(
            f"{size // 1000:>6}KB {tokens:>7} {encode_s * 1e3:>10.3f} {count_s * 1e3:>17.3f} "
            f"{ratio:>6.2f}"
        )
    print(f"\nratio = encode time / count_request time (target >= 0.8); worst {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
