"""Throughput of the embedded model at several concurrencies: prints figures, asserts nothing.

Runs the story pipeline over the same topics through the runner at each
concurrency, against one embedded ``llama-server`` with 4 slots, and prints wall
time, output tokens per second and time to first token (p50, p95).

Run: ``.venv/bin/python benchmarks/embedded_concurrency.py [--items 8] [--levels 1 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from lc_async_pipelines import ModelSettings, build_story_chain, make_chat_model
from lc_async_pipelines.embedded import EmbeddedModelServer
from lc_async_pipelines.runner import Item, RunOptions, run_items

TOPICS = [
    "a magical forest", "a futuristic city", "an underwater civilization", "a lighthouse keeper",
    "a desert caravan", "a clockwork bird", "a mountain monastery", "a lost map",
]  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(base_url: str, items: int, concurrency: int, max_words: int) -> dict[str, float]:
    llm = make_chat_model(ModelSettings(temperature=0.7), base_url=base_url)
    chain = build_story_chain(llm, max_words=max_words)
    work = [Item(f"{i}", i, TOPICS[i % len(TOPICS)] + f" (#{i})") for i in range(items)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    records = [r async for r in run_items(chain, work, RunOptions(concurrency=concurrency))]
    wall = loop.time() - start
    tokens = sum(r.usage.get("output_tokens", 0) for r in records)
    ttft = [r.ttft_s for r in records if r.ttft_s is not None]
    return {
        "concurrency": concurrency,
        "items": len(records),
        "failed": sum(not r.ok for r in records),
        "wall_s": round(wall, 1),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_s": round(statistics.median(ttft), 2),
        "ttft_p95_s": round(pct(ttft, 0.95), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-words", type=int, default=150)
    args = parser.parse_args()
    async with EmbeddedModelServer(parallel=max(args.levels)) as server:
        await measure(server.base_url, 1, 1, 20)  # warm-up: load weights into the page cache
        rows = [await measure(server.base_url, args.items, c, args.max_words) for c in args.levels]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    base = rows[0]["tokens_per_s"]
    for row in rows[1:]:
        ratio = row["tokens_per_s"] / base
        print(f"concurrency {row['concurrency']}: {ratio:.2f}x the tokens/s of the first level")


if __name__ == "__main__":
    asyncio.run(main())
