"""Client CPU per model call, from bare httpx to ``pipelines run``, in one process run.

Against ``benchmarks/mock_server.py`` (started here, in its own process, so its
CPU is never counted: ``--latency`` per answer, no rate limit, no fault), the
same ``--items`` short prompts go through each client in turn, ``--concurrency``
calls in flight:

1. ``httpx.AsyncClient`` POSTs to ``/v1/chat/completions`` + a semaphore
   (connection pool as large as the window), and the same on ``httpx2``, the
   fork the SDK uses: the floor (httpcore 1.0.9, under httpx 0.29, walks every
   pooled connection on each request: encode/httpcore#1035, fixed in httpx2 by
   pydantic/httpx2#974 and #1076, so plain httpx costs more than the SDK here);
2. ``openai.AsyncOpenAI`` + a semaphore, on the SDK's default httpx client and
   on its aiohttp client (``openai.DefaultAioHttpClient``, ``pip install
   'openai[aiohttp]'``; skipped when not installed);
3. LCEL ``ChatPromptTemplate | ChatOpenAI | StrOutputParser`` ``.abatch`` with
   ``max_concurrency``: ``streaming=False``, then ``streaming=True``
   (``stream_usage=True``, as the session's model), each on both HTTP clients,
   and the streaming one again with a token consumer (``TerminalStreamHandler``
   writing to ``/dev/null``: a token consumer, as ``pipelines run --stream`` on a terminal);
4. ``run_items`` over the same chain on ``model_session(...).llm`` (the
   session's model, default settings but the endpoint), without a handler and
   with the token consumer;
5. ``pipelines run --prompt FILE --input FILE.jsonl --output OUT.jsonl`` as a
   whole process (start-up and records written included; its CPU is the
   child's rusage), after a one-item run whose cost is printed apart.

Each in-process client is built, then warmed with ``--warmup`` other prompts
(default twice the window, so every connection of the pool is open), then
measured: process CPU (``time.process_time``, all threads), wall time, and the
p50 latency of a call: for the semaphore clients the request in its slot; for
LCEL the model's ``ainvoke`` in its slot (a sequence's ``abatch`` runs step by
step over all inputs, so no item is done before the batch is); for
``run_items`` and the CLI the records' ``latency_s`` (the item's chain). Every
output must be its own prompt's echo, and the mock must have served exactly
the calls of the case; failures are counted and the first printed. Ratios are
CPU per call over LCEL ``abatch``'s (non-streaming and streaming), and the
targets of issue 18 are checked.

Run: ``.venv/bin/python -m benchmarks.overhead`` (3,000 items, about 5 minutes
on 2 cores); ``--json`` prints the figures as JSON; ``--against OLD.json``
adds each row's calls/s over a saved run's; ``--profile NAME`` runs cProfile
over one case (its figures then include the profiler's cost);
``--trace-overhead`` adds ``run_items`` with OpenTelemetry traces and metrics
on (docs/telemetry.md), exported over OTLP/HTTP to
``benchmarks/otlp_receiver.py`` in its own process: the row above it,
``run_items`` untraced, is the same client with telemetry off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import gc
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import httpx
import httpx2
import openai
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

import lc_async_pipelines
from benchmarks.mock_server import spawn
from lc_async_pipelines.callbacks import TerminalStreamHandler
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.runner import Item, RunOptions, run_items
from lc_async_pipelines.session import model_session

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = Path(sys.executable).parent / "pipelines"
MODEL = "mock"
KEY = "sk-overhead-bench"
ECHO = "echo: "
# What the session's model sends by default (ModelSettings): every client sends it.
TEMPERATURE, MAX_TOKENS, TIMEOUT_S = 0.2, 512, 120.0
LCEL, LCEL_STREAM = "LCEL abatch", "LCEL abatch, streaming"
RUN_ITEMS, RUN_ITEMS_STREAM = "run_items, session.llm", "run_items, session.llm + tokens"
RUN_ITEMS_TRACED = "run_items, session.llm, traced (OTLP)"
CLI = "pipelines run (process)"
PACKAGES = ["openai", "httpx", "httpcore", "httpx2", "aiohttp"]
PACKAGES += ["langchain-core", "langchain-openai"]
PROMPT = ChatPromptTemplate.from_messages([("human", "{text}")])


class TimedChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that times each ``ainvoke``: one model call, in its ``abatch`` slot.

    (A sequence's ``abatch`` runs step by step, each step over all inputs, so
    an item's time from prompt to parser is the whole batch's: the model call
    is the part to time.) The cost: two clock reads and an append per call.
    """

    async def ainvoke(self, *args: Any, **kwargs: Any) -> Any:
        """Time the parent's ``ainvoke``."""
        start = time.perf_counter()
        reply = await super().ainvoke(*args, **kwargs)
        LATENCIES.append(time.perf_counter() - start)
        return reply


LATENCIES: list[float] = []


def one_call_chain(llm: Any) -> Runnable[dict[str, str], str]:
    """The chain of the LCEL and ``run_items`` cases: prompt, model, text."""
    model: Runnable[Any, Any] = llm
    return PROMPT | model | StrOutputParser()


@dataclass
class Outcome:
    """What a client returned for the measured texts."""

    outputs: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


@dataclass
class Row:
    """One client's figures."""

    name: str
    calls: int
    failures: int
    cpu_ms_per_call: float
    calls_per_s: float
    p50_ms: float | None
    x_lcel: float | None = None
    x_lcel_stream: float | None = None
    served: int | None = None
    first_error: str | None = None
    note: str = ""


Run = Callable[[list[str]], Awaitable[Outcome]]


@dataclass
class Case:
    """A client ready to run texts; ``close`` frees what it holds."""

    name: str
    run: Run
    close: Callable[[], Awaitable[None]] | None = None
    note: str = ""


def texts_for(prefix: str, n: int) -> list[str]:
    return [f"{prefix} {i}: a short item for the overhead benchmark" for i in range(n)]


def gated(concurrency: int, call: Callable[[str], Awaitable[str]]) -> Run:
    """Run ``call`` on every text, ``concurrency`` at once, timing each in its slot."""

    async def run(texts: list[str]) -> Outcome:
        outcome = Outcome()
        gate = asyncio.Semaphore(concurrency)

        async def one(text: str) -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    outcome.outputs[text] = await call(text)
                except Exception as exc:  # counted and shown: the benchmark's check
                    outcome.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                outcome.latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one(t) for t in texts))
        return outcome

    return run


def bare_httpx(base: str, concurrency: int, module: Any = httpx) -> Case:
    """POSTs through ``module.AsyncClient`` (``httpx``, or ``httpx2`` which the SDK uses)."""
    limits = module.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = module.AsyncClient(
        base_url=base + "/v1",
        headers={"Authorization": f"Bearer {KEY}"},
        limits=limits,
        timeout=TIMEOUT_S,
        trust_env=False,
    )

    async def call(text: str) -> str:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "temperature": TEMPERATURE,
            "max_completion_tokens": MAX_TOKENS,
        }
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        content: str = response.json()["choices"][0]["message"]["content"]
        return content

    name = f"{module.__name__} {module.__version__} + semaphore"
    return Case(name, gated(concurrency, call), client.aclose)


def aiohttp_client() -> Any | None:
    """The SDK's aiohttp client, or None when ``openai[aiohttp]`` is not installed."""
    try:
        return openai.DefaultAioHttpClient()
    except RuntimeError:
        return None


def sdk(base: str, concurrency: int, *, aiohttp: bool) -> Case | None:
    http_client = aiohttp_client() if aiohttp else None
    if aiohttp and http_client is None:
        return None
    client = openai.AsyncOpenAI(
        base_url=base + "/v1",
        api_key=KEY,
        max_retries=0,
        timeout=TIMEOUT_S,
        http_client=http_client,
    )

    async def call(text: str) -> str:
        reply = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": text}],
            temperature=TEMPERATURE,
            max_completion_tokens=MAX_TOKENS,
        )
        return reply.choices[0].message.content or ""

    name = "AsyncOpenAI + semaphore" + (", aiohttp" if aiohttp else "")
    return Case(name, gated(concurrency, call), client.close)


def chain_run(chain: Runnable[dict[str, str], str], concurrency: int, callbacks: list[Any]) -> Run:
    """``chain.abatch`` over the texts, exceptions returned and counted."""

    async def run(texts: list[str]) -> Outcome:
        config = RunnableConfig(max_concurrency=concurrency, callbacks=callbacks)
        inputs = [{"text": t} for t in texts]
        outs = await chain.abatch(inputs, config, return_exceptions=True)
        outcome = Outcome(latencies=LATENCIES[:])
        for text, out in zip(texts, outs, strict=True):
            if isinstance(out, BaseException):
                outcome.errors.append(f"{type(out).__name__}: {out}")
            else:
                outcome.outputs[text] = out
        return outcome

    return run


def lcel(
    base: str, concurrency: int, *, streaming: bool, aiohttp: bool, callbacks: list[Any]
) -> Case | None:
    http_client = aiohttp_client() if aiohttp else None
    if aiohttp and http_client is None:
        return None
    # max_tokens by name: ChatOpenAI's field is aliased to max_completion_tokens.
    extra: dict[str, Any] = {"max_tokens": MAX_TOKENS}
    if streaming:
        extra["stream_usage"] = True
    if http_client is not None:
        extra["http_async_client"] = http_client
    llm = TimedChatOpenAI(
        model=MODEL,
        base_url=base + "/v1",
        api_key=SecretStr(KEY),
        temperature=TEMPERATURE,
        timeout=TIMEOUT_S,
        max_retries=0,
        streaming=streaming,
        **extra,
    )
    name = LCEL_STREAM if streaming else LCEL
    name += ", aiohttp" if aiohttp else ""
    name += " + tokens" if callbacks else ""
    close = http_client.aclose if http_client is not None else None
    return Case(name, chain_run(one_call_chain(llm), concurrency, callbacks), close)


def items_run(llm: Any, concurrency: int, callbacks: list[Any]) -> Run:
    """``run_items`` over the one-call chain, records checked like the others."""
    chain = one_call_chain(llm)

    async def run(texts: list[str]) -> Outcome:
        items = [Item(f"i{i}", i + 1, {"text": t}) for i, t in enumerate(texts)]
        outcome = Outcome()
        config = RunnableConfig(callbacks=callbacks)
        async for record in run_items(
            chain, items, RunOptions(concurrency=concurrency), config=config
        ):
            text = str(record.input["text"]) if isinstance(record.input, dict) else ""
            if record.error is not None:
                outcome.errors.append(json.dumps(record.error))
            else:
                outcome.outputs[text] = str(record.output)
                outcome.latencies.append(record.latency_s)
        return outcome

    return run


async def served(base: str) -> int:
    """Answers the mock has served whole (``/stats`` ``completed``)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        completed: int = (await client.get(base + "/stats")).json().get("completed", 0)
    return completed


def checked(texts: list[str], outcome: Outcome) -> tuple[int, str | None]:
    """Failures (no output, or not its own prompt's echo) and the first error text."""
    wrong = [t for t in texts if outcome.outputs.get(t) != ECHO + t]
    first = outcome.errors[0] if outcome.errors else None
    if first is None and wrong:
        first = f"output for {wrong[0]!r}: {outcome.outputs.get(wrong[0])!r}"
    return len(wrong), first


def p50_ms(latencies: list[float]) -> float | None:
    return round(statistics.median(latencies) * 1000, 1) if latencies else None


async def measure(case: Case, base: str, texts: list[str], warm: list[str], profile: bool) -> Row:
    """Warm the client, then run ``texts`` through it: CPU, wall, p50, checks."""
    if warm:
        await case.run(warm)
    LATENCIES.clear()
    gc.collect()  # the previous case's garbage is not this one's cost
    before = await served(base)
    profiler = cProfile.Profile() if profile else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    outcome = await case.run(texts)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    count = await served(base) - before
    failures, first = checked(texts, outcome)
    if profiler is not None:
        print_profile(profiler, case.name)
    n = len(texts)
    return Row(
        name=case.name,
        calls=n,
        failures=failures,
        cpu_ms_per_call=round(cpu * 1000 / n, 3),
        calls_per_s=round(n / wall, 1),
        p50_ms=p50_ms(outcome.latencies),
        served=count,
        first_error=first,
        note=case.note,
    )


def print_profile(profiler: cProfile.Profile, name: str, top: int = 25) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    print(f"--- cProfile of {name!r}, top {top} cumulative ---", file=sys.stderr)
    print(out.getvalue(), file=sys.stderr)


@dataclass
class CliRun:
    """One ``pipelines run`` process: its rusage CPU, wall, records and exit code."""

    cpu_s: float
    wall_s: float
    records: list[dict[str, Any]]
    returncode: int
    log: str


def cli_process(base: str, texts: list[str], folder: Path, tag: str, concurrency: int) -> CliRun:
    """Run ``pipelines run --prompt`` over ``texts`` in ``folder``; wait for it alone."""
    prompt, data, out = folder / "prompt.txt", folder / f"{tag}.jsonl", folder / f"{tag}.out.jsonl"
    prompt.write_text("{text}\n", encoding="utf-8")
    rows = (json.dumps({"id": f"{tag}-{i}", "text": t}) for i, t in enumerate(texts))
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINES_", "OPENAI_"))}
    env |= {"OPENAI_BASE_URL": base + "/v1", "OPENAI_API_KEY": KEY, "PIPELINES_MODEL": MODEL}
    cmd = [str(PIPELINES), "run", "--prompt", str(prompt), "--input", str(data)]
    cmd += ["--output", str(out), "--concurrency", str(concurrency)]
    log = folder / f"{tag}.log"
    with log.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the mock's
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    records = []
    if out.is_file():
        lines = out.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    return CliRun(
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=wall,
        records=records,
        returncode=proc.returncode,
        log=log.read_text(encoding="utf-8", errors="replace")[-2000:],
    )


async def measure_cli(
    base: str, texts: list[str], folder: Path, concurrency: int
) -> tuple[Row, dict[str, Any]]:
    """The CLI over ``texts`` after a one-item run (warm-up, and the fixed cost)."""
    first = cli_process(base, ["warm-up: one item"], folder, "one", 1)
    startup = {
        "cpu_ms": round(first.cpu_s * 1000, 1),
        "wall_s": round(first.wall_s, 3),
        "exit": first.returncode,
    }
    before = await served(base)
    run = cli_process(base, texts, folder, "all", concurrency)
    count = await served(base) - before
    outcome = Outcome(
        outputs={
            str(r["input"]["text"]): str(r["output"])
            for r in run.records
            if not r.get("error") and isinstance(r.get("input"), dict)
        },
        errors=[json.dumps(r["error"]) for r in run.records if r.get("error")],
        latencies=[float(r["latency_s"]) for r in run.records if not r.get("error")],
    )
    if run.returncode != 0:
        outcome.errors.insert(0, f"exit {run.returncode}: {run.log[-500:]}")
    failures, first_error = checked(texts, outcome)
    n = len(texts)
    row = Row(
        name=CLI,
        calls=n,
        failures=failures,
        cpu_ms_per_call=round(run.cpu_s * 1000 / n, 3),
        calls_per_s=round(n / run.wall_s, 1),
        p50_ms=p50_ms(outcome.latencies),
        served=count,
        first_error=first_error,
        note="start-up and records included; p50 from records' latency_s",
    )
    return row, startup


@contextlib.contextmanager
def devnull() -> Iterator[TextIO]:
    with open(os.devnull, "w", encoding="utf-8") as sink:
        yield sink


@contextlib.asynccontextmanager
async def session_llm(base: str) -> AsyncIterator[Any]:
    """``model_session(...).llm`` on the mock: default settings but the endpoint."""
    settings = ModelSettings(api_key=SecretStr(KEY), base_url=base + "/v1", model=MODEL)
    async with model_session(settings) as session:
        yield session.llm


async def in_process_rows(
    args: argparse.Namespace, base: str, texts: list[str], warm: list[str], sink: TextIO
) -> list[Row]:
    """Build, warm and measure each in-process client, one after the other."""
    c = args.concurrency
    tokens = [TerminalStreamHandler(stream=sink, tagged=True)]  # as `pipelines run --stream`
    builders: list[Callable[[], Case | None]] = [
        lambda: bare_httpx(base, c),
        lambda: bare_httpx(base, c, httpx2),
        lambda: sdk(base, c, aiohttp=False),
        lambda: sdk(base, c, aiohttp=True),
        lambda: lcel(base, c, streaming=False, aiohttp=False, callbacks=[]),
        lambda: lcel(base, c, streaming=False, aiohttp=True, callbacks=[]),
        lambda: lcel(base, c, streaming=True, aiohttp=False, callbacks=[]),
        lambda: lcel(base, c, streaming=True, aiohttp=True, callbacks=[]),
        lambda: lcel(base, c, streaming=True, aiohttp=False, callbacks=tokens),
    ]
    rows: list[Row] = []
    for build in builders:
        case = build()
        if case is None:
            print("skipped: the SDK's aiohttp client (pip install 'openai[aiohttp]')", flush=True)
            continue
        rows.append(await run_case(case, base, texts, warm, args.profile))
    async with session_llm(base) as llm:
        for name, callbacks in ((RUN_ITEMS, []), (RUN_ITEMS_STREAM, tokens)):
            case = Case(name, items_run(llm, c, callbacks))
            rows.append(await run_case(case, base, texts, warm, args.profile))
        if args.trace_overhead:
            rows.append(await traced_row(args, llm, base, texts, warm))
    return rows


async def traced_row(
    args: argparse.Namespace, llm: Any, base: str, texts: list[str], warm: list[str]
) -> Row:
    """``run_items`` again with telemetry on, exporting over OTLP/HTTP to a receiver process.

    The spans' and metrics' export (the SDK's batch processor thread) is in
    this process's CPU; the receiver's decoding is not. Flushed after the
    measure: what is still buffered then is exported outside it.
    """
    from benchmarks.otlp_receiver import spawn_receiver
    from lc_async_pipelines.telemetry import configure_telemetry, shutdown_telemetry

    with spawn_receiver() as receiver:
        configure_telemetry(receiver)
        try:
            case = Case(RUN_ITEMS_TRACED, items_run(llm, args.concurrency, []))
            return await run_case(case, base, texts, warm, args.profile)
        finally:
            shutdown_telemetry()


async def run_case(case: Case, base: str, texts: list[str], warm: list[str], profile: str) -> Row:
    print(f"{case.name} ...", file=sys.stderr, flush=True)
    try:
        return await measure(case, base, texts, warm, profile == case.name)
    finally:
        if case.close is not None:
            await case.close()


def add_ratios(rows: list[Row]) -> None:
    by_name = {r.name: r for r in rows}
    for row in rows:
        for attr, base_name in (("x_lcel", LCEL), ("x_lcel_stream", LCEL_STREAM)):
            base = by_name.get(base_name)
            if base is not None and base.cpu_ms_per_call:
                setattr(row, attr, round(row.cpu_ms_per_call / base.cpu_ms_per_call, 2))


def targets(rows: list[Row], against: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 18's targets: CPU per call over LCEL's, and calls/s over a saved run's."""
    by_name = {r.name: r for r in rows}
    checks: list[dict[str, Any]] = []
    for name, base_name, limit in (
        (RUN_ITEMS, LCEL, 1.15),
        (RUN_ITEMS_STREAM, LCEL_STREAM, 1.15),
        (CLI, LCEL, 1.25),
    ):
        row, base = by_name.get(name), by_name.get(base_name)
        if row is None or base is None:
            continue
        ratio = round(row.cpu_ms_per_call / base.cpu_ms_per_call, 2)
        what = f"{name} CPU/call <= {limit}x {base_name}"
        checks.append({"target": what, "value": ratio, "met": ratio <= limit})
    old = {r["name"]: r for r in (against or {}).get("rows", [])}
    for name in (RUN_ITEMS, CLI):
        if name in old and name in by_name:
            ratio = round(by_name[name].calls_per_s / old[name]["calls_per_s"], 2)
            what = f"{name} calls/s >= 3x the saved run's"
            checks.append({"target": what, "value": ratio, "met": ratio >= 3})
    return checks


def git(*cmd: str) -> str | None:
    try:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def environment(args: argparse.Namespace) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    library_changes = git("status", "--porcelain", "--", "pipelines", "callbacks", "prompts")
    return {
        "date": datetime.date.today().isoformat(),
        "label": args.label,
        "library": str(Path(lc_async_pipelines.__file__).parent),
        "commit": git("rev-parse", "--short", "HEAD"),
        # None: not run from a git checkout (say what ran with --label)
        "library_uncommitted_changes": None if library_changes is None else bool(library_changes),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "items": args.items,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "mock_latency_s": args.latency,
        "versions": versions,
    }


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    env = result["environment"]
    print(
        f"{env['items']} items, concurrency {env['concurrency']}, mock latency "
        f"{env['mock_latency_s'] * 1000:.0f} ms; commit {env['commit']}"
        f"{' + uncommitted library changes' if env['library_uncommitted_changes'] else ''}; "
        f"{env['date']}{'; ' + env['label'] if env['label'] else ''}"
    )
    print()
    print("| client | CPU ms/call | calls/s | p50 ms | x LCEL | x LCEL stream | failures |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(
            f"| {r['name']} | {r['cpu_ms_per_call']:.2f} | {r['calls_per_s']:.0f} | "
            f"{fmt(r['p50_ms'], '.0f')} | {fmt(r['x_lcel'])} | {fmt(r['x_lcel_stream'])} | "
            f"{r['failures']} |"
        )
    start = result["cli_startup"]
    print()
    print(
        f"pipelines run over one item (start-up, exit {start['exit']}): "
        f"{start['cpu_ms']:.0f} ms CPU, {start['wall_s']:.2f} s wall"
    )
    for r in result["rows"]:
        if r["failures"] or r["served"] != r["calls"]:
            print(
                f"CHECK {r['name']}: {r['failures']} failed, mock served {r['served']} "
                f"for {r['calls']} calls; first: {r['first_error']}"
            )
    print()
    for check in result["targets"]:
        mark = "met" if check["met"] else "NOT met"
        print(f"target: {check['target']}: {check['value']}x, {mark}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.02, help="the mock's, seconds")
    parser.add_argument("--warmup", type=int, help="prompts per client, unmeasured (2 x window)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--against", type=Path, help="a saved --json run: calls/s ratios")
    parser.add_argument("--profile", default="", metavar="NAME", help="cProfile this case")
    parser.add_argument("--no-cli", action="store_true", help="skip the pipelines run process")
    parser.add_argument(
        "--trace-overhead",
        action="store_true",
        help="add a run_items row with OpenTelemetry on, to a local OTLP receiver (otel extra)",
    )
    parser.add_argument("--label", default="", help="a note kept with the figures (what ran)")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = 2 * args.concurrency
    texts, warm = texts_for("item", args.items), texts_for("warm", args.warmup)
    with spawn("--latency", str(args.latency)) as base, devnull() as sink:
        rows = await in_process_rows(args, base, texts, warm, sink)
        startup: dict[str, Any] = {"cpu_ms": 0.0, "wall_s": 0.0, "exit": None}
        if not args.no_cli:
            print(f"{CLI} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="overhead-") as folder:
                cli_row, startup = await measure_cli(base, texts, Path(folder), args.concurrency)
            rows.append(cli_row)
    add_ratios(rows)
    against = json.loads(args.against.read_text()) if args.against else None
    result = {
        "environment": environment(args),
        "rows": [asdict(r) for r in rows],
        "cli_startup": startup,
        "targets": targets(rows, against),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


if __name__ == "__main__":
    asyncio.run(main())
