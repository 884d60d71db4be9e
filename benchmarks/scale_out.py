"""Past one process: four runners with and without one Redis budget, and Ray workers; prints ratios.

Against ``benchmarks/mock_server.py`` enforcing ``--rpm`` (50 requests/s by
default) with ``--latency`` per answer, a fresh mock for each case, every case
over the same ``--items`` topics (the mock echoes the prompt, so each output
must end with its own topic):

(a) four runner processes over a quarter of the items each, each with its own
    in-memory budget at the full limit (one process' behaviour, four times);
(b) the same four processes sharing one Redis budget (``benchmarks/redis_server.py``
    starts Debian's ``redis-server`` on a free loopback port);
(c) ``run_items_on_ray(..., workers=4)`` over all items with the Redis budget,
    Ray started locally by the call, as ``pipelines run --engine ray`` does;
(d) one runner process over all items with the Redis budget, then with the
    in-memory one: client CPU seconds per call, and each one's wall/bound.

Each runner is ``model_session`` + a one-call chain (the topic as the prompt,
the model, its text) + ``run_items``, what ``pipelines run`` does. Processes
build their model before a common start time, so start-up is not scheduling.
Wall time runs from the earliest item's start (its record's arrival minus its
latency, wall clock) to the last record, in every case; Ray's start-up
(``ray.init`` and the workers' model sessions) is printed apart. The bound is
``items / (rpm / 60)`` seconds.

Then what limits a run of a million items over many machines, measured here:
the records/s ``write_records`` sustains (one JSON line written and flushed
per record), the items/s one driver dispatches to Ray workers running a chain
without a model call, and the Redis budget's round-trips per call and their
latency on loopback.

Run: ``.venv/bin/python -m benchmarks.scale_out`` (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from pydantic import SecretStr

from benchmarks.mock_server import spawn
from benchmarks.redis_server import spawn as spawn_redis
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.registry import PipelineSpec
from lc_async_pipelines.runner import (
    ChainRecipe,
    Item,
    Record,
    RetryPolicy,
    RunOptions,
    run_items,
    run_items_on_ray,
)
from lc_async_pipelines.runner import write_records as write
from lc_async_pipelines.runner.limits import open_budget
from lc_async_pipelines.session import model_session

ROOT = Path(__file__).resolve().parents[1]
RETRY = RetryPolicy(max_retries=6, initial=0.5, max_wait=10)
PROMPT = ChatPromptTemplate.from_messages([("human", "{text}")])


def one_call(llm: Any) -> Any:
    """The chain every case runs: the topic as the prompt, one model call, its text."""
    return {"text": RunnablePassthrough()} | PROMPT | llm | StrOutputParser()


ONE_CALL = PipelineSpec("one-call", one_call)
KEY = "sk-scale-out-0123456789abcdef"


def topic(i: int) -> str:
    return f"the harbour {i:05d} lighthouse"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settings_for(base: str) -> ModelSettings:
    return ModelSettings(api_key=SecretStr(KEY), base_url=base + "/v1", model="mock", timeout=30)


class Tally:
    """Records as they arrive: matched outputs, wall clock of the first start and last end."""

    def __init__(self) -> None:
        self.ok = 0
        self.records = 0
        self.began = float("inf")
        self.ended = 0.0

    def add(self, record: Record) -> None:
        """Count ``record``, arrived now."""
        now = time.time()
        self.records += 1
        self.began = min(self.began, now - record.latency_s)
        self.ended = now
        text = record.input if isinstance(record.input, str) else ""
        if record.ok and isinstance(record.output, str) and record.output.endswith(text):
            self.ok += 1


# -- one runner process ---------------------------------------------------------------


async def child(args: argparse.Namespace) -> None:
    """One runner process: its items, its budget; prints its figures as one JSON line."""
    items = [Item(f"t{i}", i + 1, topic(i)) for i in range(args.first, args.first + args.count)]
    settings = settings_for(args.base)
    budget = open_budget(
        args.budget,
        rpm=args.rpm,
        max_in_flight=args.concurrency,
        base_url=settings.base_url,
        model=settings.model,
    )
    tally = Tally()
    async with budget, model_session(settings, budget=budget, retry=RETRY) as session:
        chain = ONE_CALL.build(session.llm)
        late = time.time() - args.go  # > 0: this process was not ready at the common start
        await asyncio.sleep(max(0.0, -late))
        gc.collect()
        cpu0 = cpu_s()
        options = RunOptions(concurrency=args.concurrency, retry=RETRY)
        async for record in run_items(chain, items, options):
            tally.add(record)
        cpu = cpu_s() - cpu0
    figures = {
        "ok": tally.ok,
        "late_s": round(late, 2),
        "began": tally.began,
        "ended": tally.ended,
        "cpu_s": cpu,
        "requests_sent": budget.requests_sent,
        "round_trips": getattr(budget, "round_trips", 0),
    }
    print(json.dumps(figures), flush=True)


def processes(
    base: str, budget: str | None, args: argparse.Namespace, n: int
) -> list[dict[str, Any]]:
    """Run ``n`` runner processes over the items, split evenly; return their figures."""
    share = args.items // n
    go = time.time() + args.settle
    cmd = [sys.executable, "-m", "benchmarks.scale_out", "--child", "--base", base,
           "--rpm", str(args.rpm), "--concurrency", str(args.concurrency),
           "--go", str(go)]  # fmt: skip
    if budget:
        cmd += ["--budget", budget]
    procs = [
        subprocess.Popen(
            [*cmd, "--first", str(k * share), "--count", str(share)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(n)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a runner process exited with {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def mock_stats(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(base + "/stats", timeout=10).json()
    return stats


def row(
    name: str, args: argparse.Namespace, ok: int, wall: float, stats: dict[str, Any]
) -> dict[str, Any]:
    bound = args.items / (args.rpm / 60)
    throttled = stats.get("429_rate_limit", 0)
    return {
        "case": name,
        "wall_s": round(wall, 2),
        "wall/bound": round(wall / bound, 3),
        "429s/success": round(throttled / max(ok, 1), 3),
        "429s % of calls": round(100 * throttled / max(stats.get("requests", 0), 1), 2),
        "lost": args.items - ok,
    }


def mock(args: argparse.Namespace) -> Any:
    return spawn("--rpm", str(args.rpm), "--latency", str(args.latency))


async def separate(args: argparse.Namespace, redis_url: str | None, name: str) -> dict[str, Any]:
    with mock(args) as base:
        figures = await asyncio.to_thread(processes, base, redis_url, args, 4)
        stats = mock_stats(base)
    first = min(f["began"] for f in figures)
    for f in figures:  # on stderr: how the processes overlapped
        spans = f"from {f['began'] - first:.2f} s to {f['ended'] - first:.2f} s"
        print(f"#   {name[:3]} process: {spans}, ready {f['late_s']:+.2f} s late", file=sys.stderr)
    wall = max(f["ended"] for f in figures) - first
    return row(name, args, sum(f["ok"] for f in figures), wall, stats)


async def on_ray(args: argparse.Namespace, redis_url: str) -> tuple[dict[str, Any], float]:
    items = [Item(f"t{i}", i + 1, topic(i)) for i in range(args.items)]
    tally = Tally()
    with mock(args) as base:
        recipe = ChainRecipe(
            ONE_CALL,
            {},
            settings_for(base),
            budget_url=redis_url,
            rpm=args.rpm,
            concurrency=args.concurrency,
            retry=RETRY,
        )
        called = time.time()
        async for record in run_items_on_ray(recipe, items, RunOptions(retry=RETRY), workers=4):
            tally.add(record)
        stats = mock_stats(base)
    return row(
        "(c) Ray, 4 workers, one Redis budget", args, tally.ok, tally.ended - tally.began, stats
    ), tally.began - called


async def cpu_per_call(
    args: argparse.Namespace, redis_url: str | None
) -> tuple[float, float, float]:
    """One runner process over all items: CPU ms per call, round-trips per call, wall/bound."""
    with mock(args) as base:
        (figures,) = await asyncio.to_thread(processes, base, redis_url, args, 1)
    calls = max(figures["requests_sent"], 1)
    bound = args.items / (args.rpm / 60)
    wall = (figures["ended"] - figures["began"]) / bound
    return 1000 * figures["cpu_s"] / calls, figures["round_trips"] / calls, wall


# -- what limits a big run ------------------------------------------------------------


async def write_rate(n: int) -> float:
    """Records/s ``write_records`` sustains: one JSON line written and flushed per record."""
    text = "A keeper climbs the stairs at dusk; the lamp turns, and the storm comes in. " * 6

    async def records() -> AsyncIterator[Record]:
        for i in range(n):
            usage = {"input_tokens": 60, "output_tokens": 120, "total_tokens": 180}
            yield Record(f"t{i}", i + 1, topic(i), output=text, attempts=1, latency_s=1.2,
                         ttft_s=0.3, usage=usage, calls=1)  # fmt: skip

    with tempfile.TemporaryDirectory() as folder, (Path(folder) / "out.jsonl").open("w") as out:
        start = time.perf_counter()
        await write(records(), out)
        return n / (time.perf_counter() - start)


def no_call(llm: Any) -> Any:
    """A chain without a model call: what a worker costs the driver, nothing else."""
    from langchain_core.runnables import RunnableLambda

    return RunnableLambda(lambda text: f"echo: {text}")


async def dispatch_rate(n: int, workers: int, window: int) -> float:
    """Items/s one driver sends to Ray workers and takes back, for a chain with no model call."""
    spec = PipelineSpec("no-call", no_call)
    settings = ModelSettings(api_key=SecretStr(KEY), base_url="http://127.0.0.1:9/v1", model="none")
    recipe = ChainRecipe(spec, {}, settings, concurrency=window)
    items = [Item(f"t{i}", i + 1, topic(i)) for i in range(n)]
    count, start = 0, 0.0
    async for _ in run_items_on_ray(recipe, items, RunOptions(), workers=workers):
        count += 1
        if count == 1:
            start = time.perf_counter()  # workers up: from here on it is dispatch
    return (count - 1) / (time.perf_counter() - start)


async def redis_round_trip_ms(url: str, n: int = 2000) -> float:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.ping()
        start = time.perf_counter()
        for _ in range(n):
            await client.ping()
        return 1000 * (time.perf_counter() - start) / n
    finally:
        await client.aclose()


async def timed(label: str, work: Awaitable[Any]) -> Any:
    start = time.perf_counter()
    result = await work
    print(f"# {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return result


async def main(args: argparse.Namespace) -> None:
    rows = []
    figures: list[tuple[str, str]] = []
    if "a" in args.cases:
        name = "(a) 4 processes, own in-memory budgets"
        rows.append(await timed("(a)", separate(args, None, name)))
    with spawn_redis() as url:
        if "b" in args.cases:
            name = "(b) 4 processes, one Redis budget"
            rows.append(await timed("(b)", separate(args, url, name)))
        if "c" in args.cases:
            ray_row, ray_start = await timed("(c)", on_ray(args, url))
            rows.append(ray_row)
            figures.append(("Ray start-up: ray.init + 4 workers' sessions, s", f"{ray_start:.1f}"))
        if "d" in args.cases:
            redis_cpu, round_trips, redis_wall = await timed("(d) Redis", cpu_per_call(args, url))
            memory_cpu, _, memory_wall = await timed("(d) memory", cpu_per_call(args, None))
            figures += [
                ("(d) one process, Redis budget: wall/bound", f"{redis_wall:.3f}"),
                ("(d) one process, in-memory budget: wall/bound", f"{memory_wall:.3f}"),
                ("(d) CPU per call, Redis budget, ms", f"{redis_cpu:.2f}"),
                ("(d) CPU per call, in-memory budget, ms", f"{memory_cpu:.2f}"),
                ("(d) CPU per call, Redis / in-memory", f"{redis_cpu / memory_cpu:.3f}"),
                ("Redis budget round-trips per call (RPM only)", f"{round_trips:.3f}"),
            ]
        if "e" in args.cases:
            ping_ms = await redis_round_trip_ms(url)
            figures.append(("Redis round-trip on loopback (PING), ms", f"{ping_ms:.3f}"))
    if "e" in args.cases:
        records_per_s = await write_rate(args.write_records)
        dispatched_per_s = await timed("dispatch", dispatch_rate(args.dispatch_items, 2, 64))
        figures += [
            ("write_records, records/s (written and flushed)", f"{records_per_s:,.0f}"),
            ("Ray dispatch, 2 workers x 64, no model call, items/s", f"{dispatched_per_s:,.0f}"),
        ]

    internal = ("child", "base", "budget", "first", "count", "go")
    print(json.dumps({k: v for k, v in vars(args).items() if k not in internal}))
    if rows:
        keys = list(rows[0])
        print("| " + " | ".join(keys) + " |")
        print("|" + "---|" * len(keys))
        for r in rows:
            print("| " + " | ".join(str(r[k]) for k in keys) + " |")
        print()
    if figures:
        print("| figure | value |")
        print("|---|---|")
        for name, value in figures:
            print(f"| {name} | {value} |")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--latency", type=float, default=0.05, help="mock answer latency, s")
    parser.add_argument("--concurrency", type=int, default=16, help="window per process/worker")
    parser.add_argument("--settle", type=float, default=10.0, help="s for processes to build")
    parser.add_argument("--write-records", type=int, default=100_000)
    parser.add_argument("--dispatch-items", type=int, default=5_000)
    parser.add_argument(
        "--cases", default="abcde", help="which to run: a, b, c, d, e (driver limits); default all"
    )
    # one runner process (internal)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--go", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(child(arguments) if arguments.child else main(arguments))
