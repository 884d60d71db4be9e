"""The runner under injected faults: item latency, attempts per item, and why attempts failed.

Each run starts the mock server (``benchmarks/mock_server.py``) with a share of
faulty answers (429, 500, 503, a connection dropped mid-response, a cut JSON
body, a response that hangs until the client's timeout), pushes ``--items``
items through the runner with ``ChatOpenAI`` streaming, as ``pipelines run``
does, and prints, over ``--runs`` runs:

- p50 / p95 / max item latency (seconds);
- the distribution of model-call attempts per item;
- failed attempts by error class and status, from the records' histories;
- attempts that never reached the server (attempts made minus requests the mock saw).

    python -m benchmarks.faults --items 1000 --fault-rate 0.1 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter

import httpx
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from benchmarks.mock_server import spawn
from lc_async_pipelines import ModelSettings, make_chat_model
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    Record,
    RetryPolicy,
    RunOptions,
    RunSummary,
    run_items,
    with_budget,
)

PROMPT = ChatPromptTemplate.from_messages([("human", "{text}")])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def one_run(args: argparse.Namespace, seed: int) -> dict[str, object]:
    options = ("--fault-rate", str(args.fault_rate), "--seed", str(seed),
               "--latency", str(args.latency), "--token-delay", "0.002")  # fmt: skip
    with spawn(*options) as base:
        settings = ModelSettings(
            api_key="x", base_url=base + "/v1", model="mock", max_tokens=16, timeout=args.timeout
        )
        policy = RetryPolicy(max_retries=args.max_retries)
        budget = RateBudget(max_in_flight=args.concurrency)
        llm = with_budget(make_chat_model(settings), budget, retry=policy)
        chain = {"text": lambda t: t} | PROMPT | llm | StrOutputParser()
        items = [Item(str(i), i, f"item number {i}") for i in range(args.items)]
        records: list[Record] = []
        summary = RunSummary()
        start = time.perf_counter()
        options = RunOptions(concurrency=args.concurrency, retry=policy)
        async for record in run_items(chain, items, options):
            records.append(record)
            summary.add(record)
        wall = time.perf_counter() - start
        async with httpx.AsyncClient() as client:
            seen = (await client.get(base + "/stats", timeout=5)).json()
    attempts = [len(r.history) + r.history_dropped + (1 if r.ok else 0) for r in records]
    mismatched = sum(1 for r in records if r.ok and str(r.input) not in str(r.output))
    return {
        "wall_s": wall,
        "done": summary.done,
        "failed": summary.failed,
        "mismatched": mismatched,
        "latency": [r.latency_s for r in records],
        "attempts": Counter(attempts),
        "errors": Counter(summary.attempt_errors),
        "attempts_made": sum(attempts),
        "requests_seen": int(seen.get("requests", 0)),
        "faults": {k: v for k, v in seen.items() if k.startswith("fault_")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    parser.add_argument("--latency", type=float, default=0.05, help="mock latency, seconds")
    args = parser.parse_args()
    print(
        f"{args.items} items, {args.fault_rate:.0%} faults, concurrency {args.concurrency}, "
        f"{args.max_retries} retries per call, {args.timeout:g} s timeout, {args.runs} runs"
    )
    print("| run | done | failed | mismatched | wall s | latency p50 / p95 / max s | "
          "attempts made | requests seen | never reached |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    attempts: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for run in range(args.runs):
        r = asyncio.run(one_run(args, seed=run))
        lat: list[float] = r["latency"]  # type: ignore[assignment]
        attempts.update(r["attempts"])  # type: ignore[arg-type]
        errors.update(r["errors"])  # type: ignore[arg-type]
        never = int(r["attempts_made"]) - int(r["requests_seen"])  # type: ignore[call-overload]
        cells = [
            run + 1, r["done"], r["failed"], r["mismatched"], f"{r['wall_s']:.1f}",
            f"{pct(lat, 0.5):.2f} / {pct(lat, 0.95):.2f} / {max(lat):.2f}",
            r["attempts_made"], r["requests_seen"], never,
        ]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    total = sum(attempts.values())
    print("\nattempts per item (all runs):")
    for n in sorted(attempts):
        print(f"  {n}: {attempts[n]} items ({attempts[n] / total:.1%})")
    print("failed attempts by class (all runs):")
    for name, count in errors.most_common():
        print(f"  {name}: {count}")


if __name__ == "__main__":
    main()
