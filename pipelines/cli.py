"""The ``pipelines`` command line.

``pipelines run {story,summary} --input PATH --output PATH.jsonl``: run a pipeline
over a file of items (one JSON record per item out, a summary at the end).
``pipelines serve``: the web service and page (:mod:`pipelines.service`).
``pipelines serve-model``: run the embedded model server until interrupted, so
that several runs or a notebook can share it. ``pipelines build-server``: build
and cache ``llama-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines._llama_build import (
    build_llama_server,
    find_llama_server,
)
from lc_async_pipelines.callbacks.streaming import TerminalStreamHandler
from lc_async_pipelines.embedded import EmbeddedModelServer
from lc_async_pipelines.errors import EmbeddedModelError
from lc_async_pipelines.models import ModelSettings, chat_model_session
from lc_async_pipelines.runner import (
    InputError,
    RateBudget,
    Record,
    RetryPolicy,
    SQLiteCache,
    prepare_resume,
    read_items,
    run_items,
    with_budget,
    write_records,
)
from lc_async_pipelines.runner._attach import update_chat_models
from lc_async_pipelines.runner.core import summary_path
from lc_async_pipelines.story import build_story_chain
from lc_async_pipelines.summary import build_auto_summary_chain

__all__ = ["build_parser", "main"]

PIPELINES = ("story", "summary")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pipelines`` command."""
    parser = argparse.ArgumentParser(prog="pipelines", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline over a file of items")
    run.add_argument("pipeline", choices=PIPELINES)
    run.add_argument("--input", required=True, type=Path, help=".jsonl, .json, .csv or .txt")
    run.add_argument("--output", required=True, type=Path, help="records, one JSON per line")
    run.add_argument("--field", help="text field of object rows (default: input/text/topic/...)")
    run.add_argument("--id-field", default="id", help="row field holding a stable id")
    run.add_argument("--limit", type=int, help="run at most N (distinct) items")
    run.add_argument("--concurrency", type=int, default=4, help="items in flight (default 4)")
    run.add_argument("--max-retries", type=int, default=3, help="retries per item (default 3)")
    run.add_argument("--rpm", type=float, help="requests per minute, shared by all calls")
    run.add_argument("--tpm", type=float, help="tokens per minute, shared by all calls")
    run.add_argument(
        "--max-in-flight",
        type=int,
        help="model calls in flight across the run, nested ones included (default: --concurrency)",
    )
    run.add_argument(
        "--item-timeout", type=float, help="deadline per item, seconds, retries included"
    )
    run.add_argument(
        "--max-input-tokens",
        type=int,
        help="inputs estimated larger become error records without a call",
    )
    run.add_argument(
        "--cache",
        type=Path,
        help="SQLite LLM cache: identical calls are answered from it, unpaid and unthrottled",
    )
    run.add_argument("--fallback-model", help="model tried when a call to the main one fails")
    run.add_argument("--max-words", type=int, help="output length cap in words")
    run.add_argument("--outline", action="store_true", help="story: outline first, then story")
    run.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    run.add_argument(
        "--restart", action="store_true", help="overwrite OUTPUT instead of resuming from it"
    )
    run.add_argument(
        "--grace", type=float, default=30.0, help="seconds in-flight items get after SIGINT/SIGTERM"
    )

    web = sub.add_parser("serve", help="serve the pipelines over HTTP: API, SSE streams, a page")
    web.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8000, help="port (default 8000)")

    serve = sub.add_parser("serve-model", help="serve the embedded model until interrupted")
    serve.add_argument("--port", type=int, help="loopback port (default: a free one)")
    serve.add_argument("--parallel", type=int, default=4, help="server slots (default 4)")

    sub.add_parser("build-server", help="build and cache llama.cpp's llama-server")
    return parser


def _build_chain(args: argparse.Namespace, llm: Any) -> Runnable[str, str]:
    if args.pipeline == "story":
        return build_story_chain(llm, max_words=args.max_words or 250, outline=args.outline)
    return build_auto_summary_chain(llm, max_words=args.max_words or 60)


async def _run(args: argparse.Namespace) -> int:
    items = read_items(args.input, field=args.field, id_field=args.id_field)
    settings = ModelSettings.from_env()
    callbacks = [TerminalStreamHandler(tagged=args.concurrency > 1)] if args.stream else []
    config = RunnableConfig(max_concurrency=args.concurrency, callbacks=callbacks)  # type: ignore[typeddict-item]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.restart:
        args.output.unlink(missing_ok=True)
    done = prepare_resume(args.output)
    if done:
        print(f"resuming: {len(done)} items already done in {args.output}", file=sys.stderr)
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        received.append(sig)
        print(f"stopping: no new items; in flight get {args.grace:g} s", file=sys.stderr)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    async with chat_model_session(settings, parallel=args.concurrency) as llm:
        budget = RateBudget(
            rpm=args.rpm, tpm=args.tpm, max_in_flight=args.max_in_flight or args.concurrency
        )
        model: Any = llm
        cache = SQLiteCache(args.cache) if args.cache else None
        if cache is not None:
            model = update_chat_models(model, cache=cache)
        if args.fallback_model:
            # Same endpoint and settings, another model name.
            fallback = model.model_copy(update={"model_name": args.fallback_model})
            model = model.with_fallbacks([fallback])
        chain = _build_chain(args, with_budget(model, budget))
        records = run_items(
            chain,
            items,
            config=config,
            retry=RetryPolicy(max_retries=args.max_retries),
            limit=args.limit,
            skip=done,
            stop=stop,
            grace_s=args.grace,
            item_timeout_s=args.item_timeout,
            max_input_tokens=args.max_input_tokens,
        )
        with args.output.open("a", encoding="utf-8") as out, _progress(args.limit) as tick:
            summary = await write_records(records, out, on_record=tick)
    totals = summary.as_dict()
    totals["requests_sent"] = budget.requests_sent
    totals["cache_hits"] = cache.hits if cache is not None else 0
    if cache is not None:
        cache.close()
    summary_path(args.output).write_text(json.dumps(totals, indent=2) + "\n")
    print(json.dumps({"summary": totals}), file=sys.stderr)
    if received:
        return 128 + received[0]  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    return 0 if summary.failed == 0 else 1


@contextlib.contextmanager
def _progress(total: int | None) -> Iterator[Callable[[Record], None]]:
    """Yield a per-record callback drawing a rich progress bar, or a no-op off a terminal."""
    if not sys.stderr.isatty():
        yield lambda record: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    counts = {"done": 0, "failed": 0, "tokens": 0}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} items/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("", total=total, rate=0.0)

        def tick(record: Record) -> None:
            counts["done" if record.ok else "failed"] += 1
            counts["tokens"] += record.usage.get("total_tokens", 0)
            elapsed = progress.tasks[0].elapsed or 0.0
            finished = counts["done"] + counts["failed"]
            progress.update(
                task,
                advance=1,
                rate=finished / elapsed if elapsed else 0.0,
                description=f"done {counts['done']} failed {counts['failed']} "
                f"tokens {counts['tokens']}",
            )

        yield tick


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from lc_async_pipelines.service import create_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lc_async_pipelines").setLevel(logging.INFO)
    print(f"page and API at http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port)
    return 0


def _serve_model(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedModelServer(parallel=args.parallel, port=args.port) as server:
        print(f"embedded model at {server.base_url}", flush=True)
        print(f"share it: export PIPELINES_EMBEDDED_URL={server.base_url}", flush=True)
        while not stop.wait(1.0) and server.running:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    0: all items done; 1: some failed; 2: bad usage or input file; 130/143:
    stopped by SIGINT/SIGTERM (resumable).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "serve":
            return _serve(args)
        if args.command == "serve-model":
            return _serve_model(args)
        existing = find_llama_server()
        print(existing or build_llama_server())
        return 0
    except (InputError, EmbeddedModelError, ValueError) as exc:
        print(f"pipelines: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
