"""Pacing against a rate-limited endpoint at its own limit, in one process run: prints ratios.

Against ``benchmarks/mock_server.py`` (started here, in its own process), which
enforces ``--rpm`` and ``--tpm`` over one-second windows, answers 429 with
``Retry-After`` and sends OpenAI's ``x-ratelimit-*`` headers, this project's
runner pushes ``--items`` items with the budget set to the endpoint's limit:

1. ``rpm = limit``, the budget in memory, then shared through Redis (a
   ``redis-server`` started here);
2. ``tpm = limit`` (and a requests limit far above it), in memory, then Redis;
3. ``rpm = limit`` with ``--fault-rate`` transient faults (429, 500, 503, a
   dropped connection, a cut body; no hang, whose tail is the client's
   timeout, not pacing), ``--runs`` times with another seed each run.

For each: wall time over the bound (requests the mock admitted over its rate,
or tokens it admitted over its rate, whichever is longer: so with faults, the
bound counts the retries) and over the reachable bound (the one-second
windows the admitted requests need, packed whole: :func:`windows_needed`),
the share of calls the limit refused (429s of the limit, not injected
ones), lost items and client CPU ms per call. With ``--compare``, the same
``rpm = limit`` row for ``AsyncOpenAI`` + a semaphore with the SDK's retries
and for LCEL ``abatch`` + ``with_retry()``.
Clients are built before the clock starts.

Run: ``.venv/bin/python -m benchmarks.rate_limits --items 1000 --rpm 3000``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from benchmarks import redis_server
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
from lc_async_pipelines.runner.limits import RedisRateBudget

PROMPT = ChatPromptTemplate.from_messages([("human", "{text}")])
TRANSIENT = "429,500,503,reset,truncated"


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: the limits the mock enforces (the budget's too), and where the budget lives."""

    name: str
    rpm: float
    tpm: float | None = None
    redis: bool = False
    fault_rate: float = 0.0
    seed: int = 0
    max_tokens: int = 8


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Run = Callable[[list[str]], Awaitable[list[str | None]]]


def sdk_semaphore(base: str, case: Case, redis_url: str | None) -> Run:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=6)
    gate = asyncio.Semaphore(64)

    async def one(text: str) -> str | None:
        async with gate:
            try:
                r = await client.chat.completions.create(
                    model="mock",
                    messages=[{"role": "user", "content": text}],
                    max_tokens=case.max_tokens,
                )
                return r.choices[0].message.content
            except openai.APIError:
                return None

    async def run(texts: list[str]) -> list[str | None]:
        return list(await asyncio.gather(*(one(t) for t in texts)))

    return run


def lcel_abatch(base: str, case: Case, redis_url: str | None) -> Run:
    settings = ModelSettings(
        api_key="x", base_url=base + "/v1", model="mock", max_tokens=case.max_tokens
    )
    llm = make_chat_model(settings, streaming=False)
    chain = (PROMPT | llm | StrOutputParser()).with_retry(stop_after_attempt=6)

    async def run(texts: list[str]) -> list[str | None]:
        outs = await chain.abatch(
            [{"text": t} for t in texts], {"max_concurrency": 64}, return_exceptions=True
        )
        return [o if isinstance(o, str) else None for o in outs]

    return run


def make_budget(case: Case, redis_url: str | None) -> RateBudget:
    limits: dict[str, Any] = {"rpm": case.rpm, "tpm": case.tpm}
    if case.tpm and "tpm_charge" in {f.name for f in dataclasses.fields(RateBudget)}:
        limits["tpm_charge"] = "usage"  # the mock counts what a call used, as self-hosted ones do
    if case.redis:
        assert redis_url is not None
        return RedisRateBudget(url=redis_url, key=f"bench-{time.time()}", **limits)
    return RateBudget(**limits)


def project_runner(base: str, case: Case, redis_url: str | None) -> Run:
    settings = ModelSettings(
        api_key="x", base_url=base + "/v1", model="mock", max_tokens=case.max_tokens
    )
    budget = make_budget(case, redis_url)
    policy = RetryPolicy(max_retries=6, initial=0.5, max_wait=10)
    # each call retried on its own, as model_session does
    llm = with_budget(make_chat_model(settings, streaming=False), budget, retry=policy)
    chain = {"text": lambda t: t} | PROMPT | llm | StrOutputParser()

    async def run(texts: list[str]) -> list[str | None]:
        items = [Item(str(i), i, t) for i, t in enumerate(texts)]
        outs: dict[str, str | None] = {}
        async with budget:
            async for r in run_items(chain, items, RunOptions(concurrency=64, retry=policy)):
                outs[r.id] = r.output
        return [outs.get(str(i)) for i in range(len(texts))]

    return run


def mock_options(case: Case, latency: float) -> list[str]:
    options = ["--rpm", str(case.rpm), "--latency", str(latency), "--seed", str(case.seed)]
    if case.tpm:
        options += ["--tpm", str(case.tpm)]
    if case.fault_rate:
        options += ["--fault-rate", str(case.fault_rate), "--faults", TRANSIENT]
    return options


async def measure(
    approach: str,
    setup: Callable[[str, Case, str | None], Run],
    case: Case,
    n: int,
    latency: float,
    redis_url: str | None,
) -> dict[str, Any]:
    texts = [f"item {i}" for i in range(n)]
    with spawn(*mock_options(case, latency)) as base:
        run = setup(base, case, redis_url)
        gc.collect()  # the previous case's garbage is not this one's cost
        cpu0, t0 = cpu_s(), time.perf_counter()
        outs = await run(texts)
        wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        async with httpx.AsyncClient() as client:
            stats = (await client.get(base + "/stats")).json()
    ok = sum(o is not None and o.endswith(t) for o, t in zip(outs, texts, strict=True))
    limited = stats.get("429_rate_limit", 0)
    admitted = stats["requests"] - limited  # faulted requests were admitted: they count
    bound = max(
        admitted / (case.rpm / 60),
        stats.get("tokens_admitted", 0) / (case.tpm / 60) if case.tpm else 0.0,
    )
    reachable = max(bound, windows_needed(stats.get("admitted_tokens", []), case))
    return {
        "case": case.name,
        "approach": approach,
        "wall/bound": round(wall / bound, 3),
        "wall/reachable": round(wall / reachable, 3),
        "429 % of calls": round(100 * limited / max(stats["requests"], 1), 2),
        "requests": stats["requests"],
        "faults": sum(v for k, v in stats.items() if k.startswith("fault_")),
        "lost": n - ok,
        "cpu_ms/call": round(cpu * 1000 / n, 2),
    }


def windows_needed(tokens: list[int], case: Case) -> float:
    """Seconds the fastest client needs for these requests, in this order, whole.

    The mock admits whole requests into one-second windows of ``rpm / 60``
    requests and ``tpm / 60`` tokens: a window that cannot take the next
    request closes with room left (calls of 4 tokens fill 48 of 50), so the
    rate bound is out of reach by that room. Windows filled in order
    (next fit, optimal for a fixed order): their count, the last one counted
    by its fill, as the rate bound counts tokens over the rate.
    """
    per_window_requests = case.rpm / 60 if case.rpm else float("inf")
    per_window_tokens = case.tpm / 60 if case.tpm else float("inf")
    windows, requests, used = 0, 0, 0.0
    for size in tokens:
        if windows == 0 or requests + 1 > per_window_requests or used + size > per_window_tokens:
            windows, requests, used = windows + 1, 0, 0.0
        requests, used = requests + 1, used + size
    if windows == 0:
        return 0.0
    return windows - 1 + max(requests / per_window_requests, used / per_window_tokens)


@contextlib.contextmanager
def burners(count: int) -> Iterator[None]:
    """Keep ``count`` processes spinning on the CPU: the jitter of a loaded machine."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def maybe_redis(needed: bool) -> AsyncIterator[str | None]:
    if not needed:
        yield None
        return
    with redis_server.spawn() as url:
        yield url


def cases(args: argparse.Namespace) -> list[Case]:
    tpm_rpm = args.rpm * 20  # far above what the tokens allow: the tokens bind
    chosen: list[Case] = []
    for where in args.budgets:
        redis = where == "redis"
        chosen.append(Case(f"rpm=limit {where}", args.rpm, redis=redis))
        chosen.append(Case(f"tpm=limit {where}", tpm_rpm, args.tpm, redis=redis))
    if args.runs:
        for where in args.fault_budgets:
            chosen += [
                Case(
                    f"rpm=limit {where} {args.fault_rate:.0%} faults, run {run + 1}",
                    args.rpm,
                    redis=where == "redis",
                    fault_rate=args.fault_rate,
                    seed=run + 1,
                )
                for run in range(args.runs)
            ]
    return chosen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--tpm", type=float, default=15000, help="the tpm=limit rows' limit")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=5, help="runs with faults (0: none)")
    parser.add_argument(
        "--budgets", nargs="*", default=["memory", "redis"], choices=["memory", "redis"]
    )
    parser.add_argument(
        "--fault-budgets", nargs="*", default=["memory"], choices=["memory", "redis"]
    )
    parser.add_argument("--compare", action="store_true", help="also the SDK and LCEL rows")
    parser.add_argument(
        "--burn", type=int, default=0, help="processes kept spinning meanwhile (a loaded machine)"
    )
    args = parser.parse_args()
    print(json.dumps(vars(args)), flush=True)
    todo = cases(args)
    rows: list[dict[str, Any]] = []
    with burners(args.burn):
        async with maybe_redis(any(c.redis for c in todo)) as redis_url:
            await run_all(args, todo, redis_url, rows)
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


async def run_all(
    args: argparse.Namespace, todo: list[Case], redis_url: str | None, rows: list[dict[str, Any]]
) -> None:
    """Measure every row, printing each as it is done."""
    if args.compare:
        plain = Case("rpm=limit", args.rpm)
        for name, setup in (("AsyncOpenAI + semaphore", sdk_semaphore), ("LCEL", lcel_abatch)):
            rows.append(await measure(name, setup, plain, args.items, args.latency, None))
            print(json.dumps(rows[-1]), flush=True)
    for case in todo:
        row = await measure(
            "project runner", project_runner, case, args.items, args.latency, redis_url
        )
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
