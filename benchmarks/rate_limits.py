"""Three ways to push N items through a rate-limited endpoint, in one process run: prints ratios.

Against ``benchmarks/mock_server.py`` (started here, in its own process) that
enforces ``--rpm`` and answers 429 with ``Retry-After``:

1. ``AsyncOpenAI`` + ``asyncio.Semaphore`` with the SDK's retries (the usual guide pattern);
2. plain LCEL ``chain.with_retry().abatch(max_concurrency=64)``;
3. this project's runner with ``RateBudget(rpm=...)`` and per-item retries.

For each: wall time over the rate-limit bound (N / RPM minutes), 429s per
successful call, lost items, and client CPU seconds per call. Clients are built
before the clock starts (building a ``ChatOpenAI`` with its HTTP clients takes
about 0.2 s here, which is not scheduling).

Run: ``.venv/bin/python -m benchmarks.rate_limits --items 1000 --rpm 3000``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from benchmarks.mock_server import spawn
from lc_async_pipelines import ModelSettings, make_chat_model
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    run_items,
    with_budget,
)

PROMPT = ChatPromptTemplate.from_messages([("human", "{text}")])


def mock(rpm: float, latency: float, *extra: str) -> contextlib.AbstractContextManager[str]:
    return spawn("--rpm", str(rpm), "--latency", str(latency), *extra)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Run = Callable[[list[str]], Awaitable[list[str | None]]]


def sdk_semaphore(base: str) -> Run:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=6)
    gate = asyncio.Semaphore(64)

    async def one(text: str) -> str | None:
        async with gate:
            try:
                r = await client.chat.completions.create(
                    model="mock", messages=[{"role": "user", "content": text}], max_tokens=8
                )
                return r.choices[0].message.content
            except openai.APIError:
                return None

    async def run(texts: list[str]) -> list[str | None]:
        return list(await asyncio.gather(*(one(t) for t in texts)))

    return run


def lcel_abatch(base: str) -> Run:
    settings = ModelSettings(api_key="x", base_url=base + "/v1", model="mock", max_tokens=8)
    llm = make_chat_model(settings, streaming=False)
    chain = (PROMPT | llm | StrOutputParser()).with_retry(stop_after_attempt=6)

    async def run(texts: list[str]) -> list[str | None]:
        outs = await chain.abatch(
            [{"text": t} for t in texts], {"max_concurrency": 64}, return_exceptions=True
        )
        return [o if isinstance(o, str) else None for o in outs]

    return run


def project_runner(base: str, rpm: float, tpm: float | None = None) -> Run:
    settings = ModelSettings(api_key="x", base_url=base + "/v1", model="mock", max_tokens=8)
    budget = RateBudget(rpm=rpm, tpm=tpm)
    llm = with_budget(make_chat_model(settings, streaming=False), budget)
    chain = {"text": lambda t: t} | PROMPT | llm | StrOutputParser()
    policy = RetryPolicy(max_retries=6, initial=0.5, max_wait=10)

    async def run(texts: list[str]) -> list[str | None]:
        items = [Item(str(i), i, t) for i, t in enumerate(texts)]
        outs: dict[str, str | None] = {}
        async for r in run_items(chain, items, RunOptions(concurrency=64, retry=policy)):
            outs[r.id] = r.output
        return [outs.get(str(i)) for i in range(len(texts))]

    return run


async def measure(
    name: str,
    setup: Callable[[str], Run],
    n: int,
    rpm: float,
    latency: float,
    tpm: float | None = None,
) -> dict[str, Any]:
    texts = [f"item {i}" for i in range(n)]
    with mock(rpm, latency, *(["--tpm", str(tpm)] if tpm else [])) as base:
        run = setup(base)
        gc.collect()  # the previous approach's garbage is not this one's cost
        cpu0, t0 = cpu_s(), time.perf_counter()
        outs = await run(texts)
        wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        async with httpx.AsyncClient() as client:
            stats = (await client.get(base + "/stats")).json()
    ok = sum(o is not None and o.endswith(t) for o, t in zip(outs, texts, strict=True))
    # The slower of the two limits bounds the run; tokens as the mock counted them.
    bound = max(n / (rpm / 60), stats.get("tokens_admitted", 0) / (tpm / 60) if tpm else 0)
    return {
        "approach": name,
        "wall/bound": round(wall / bound, 3),
        "429s/success": round(stats.get("429_rate_limit", 0) / max(ok, 1), 3),
        "429s % of calls": round(
            100 * stats.get("429_rate_limit", 0) / max(stats["requests"], 1), 2
        ),
        "lost": n - ok,
        "cpu_ms/call": round(cpu * 1000 / n, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tpm", type=float, help="tokens per minute, enforced and budgeted too")
    args = parser.parse_args()
    approaches: list[tuple[str, Callable[[str], Run]]] = [
        ("AsyncOpenAI + semaphore", sdk_semaphore),
        ("LCEL abatch + with_retry", lcel_abatch),
        ("project runner", lambda base: project_runner(base, args.rpm, args.tpm)),
    ]
    rows = [
        await measure(n, f, args.items, args.rpm, args.latency, args.tpm) for n, f in approaches
    ]
    print(json.dumps(vars(args)))
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    asyncio.run(main())
