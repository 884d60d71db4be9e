"""The ``pipelines`` command line: run any pipeline over a file, serve pipelines, serve the model.

Only the standard library is imported until the arguments are parsed and
checked, so ``--help``, ``--version`` and argument errors answer at once
(``benchmarks/cli_startup.py`` measures it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lc_async_pipelines._version import __version__

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from lc_async_pipelines.registry import PipelineSpec
    from lc_async_pipelines.runner import Item

__all__ = ["build_parser", "main"]

_RUN_EXAMPLES = """\
examples:
  pipelines run story --input topics.txt --output out/stories.jsonl --stream
  pipelines run summary --input news.json --field article --id-field article_id \\
      --limit 20 --concurrency 4 --output out/news.jsonl
  pipelines run --prompt review.txt --input rows.csv --output out/reviews.jsonl
  pipelines run --prompt analyse.txt --schema analysis.schema.json \\
      --input articles.jsonl --output out/analyses.jsonl
  pipelines run my_app.chains:build_chain --input rows.jsonl --output out/o.jsonl
  pipelines run summary -m openai:gpt-4o-mini --rpm 500 --tpm 200000 \\
      --input docs.jsonl --output out/s.jsonl --cache out/llm-cache.sqlite

TARGET is a registered pipeline (pipelines list) or package.module:attr, where
attr is a factory taking the chat model, a PipelineSpec or a ready Runnable.
Input: .jsonl, .json (array), .csv (header row) or .txt (one item a line).
Output: one JSON record a line; running the same command again resumes.
Exit: 0 all done, 1 some items failed, 2 bad arguments or input, 130/143 stopped.
"""

_MAIN_EXAMPLES = """\
examples:
  pipelines run story --input topics.txt --output out/stories.jsonl
  pipelines run --prompt prompt.txt --input rows.csv --output out/o.jsonl
  pipelines serve --port 8000
  pipelines list

With no OPENAI_API_KEY, OPENAI_BASE_URL or provider:model set, the embedded
model (SmolLM2-135M on llama.cpp's llama-server) runs on this machine.
"""


def _number(kind: type[int] | type[float], minimum: float, *, strict: bool) -> Callable[[str], Any]:
    """An argparse type: a number >= minimum (> minimum when strict), else a one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_positive_int = _number(int, 0, strict=True)
_count = _number(int, 0, strict=False)
_positive_float = _number(float, 0, strict=True)
_seconds = _number(float, 0, strict=False)


def _model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "-m",
        "--model",
        help="model name on the configured endpoint, or provider:model for LangChain's "
        "init_chat_model (e.g. openai:gpt-4o-mini); default: PIPELINES_MODEL",
    )
    group.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded model whatever the environment or .env says",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pipelines`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="pipelines",
        description="LangChain async pipelines: run any chain over a file of items, "
        "or serve pipelines over HTTP.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a pipeline over a file of items, one record per item",
        description="Run a pipeline over a file of items: one JSON record per item, "
        "resumable, within a shared rate budget.",
        epilog=_RUN_EXAMPLES,
        formatter_class=formatter,
    )
    run.add_argument("target", nargs="?", metavar="TARGET", help="pipeline name or module:attr")
    run.add_argument("--prompt", type=Path, help="prompt template file instead of TARGET")
    run.add_argument(
        "--schema",
        help="with --prompt: structured output, a JSON Schema file or module:PydanticModel",
    )
    io = run.add_argument_group("input and output")
    io.add_argument("--input", required=True, type=Path, help=".jsonl, .json, .csv or .txt")
    io.add_argument("--output", required=True, type=Path, help="records, one JSON per line")
    io.add_argument("--field", help="text field of object rows (default: input/text/topic/...)")
    io.add_argument("--id-field", default="id", help="row field holding a stable id (default id)")
    io.add_argument("--limit", type=_count, help="run at most N distinct items")
    io.add_argument(
        "--restart", action="store_true", help="start over instead of resuming from OUTPUT"
    )
    io.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    opts = run.add_argument_group("pipeline options")
    opts.add_argument("--max-words", type=_positive_int, help="output length cap in words")
    opts.add_argument("--outline", action="store_true", help="story: outline first, then story")
    limits = run.add_argument_group("concurrency, budget and retries")
    limits.add_argument(
        "--concurrency", type=_positive_int, default=4, help="items in flight (default 4)"
    )
    limits.add_argument(
        "--max-retries",
        type=_count,
        default=3,
        help="retries of each model call, and of an item whose output fails its schema (default 3)",
    )
    limits.add_argument("--rpm", type=_positive_float, help="requests per minute, whole run")
    limits.add_argument("--tpm", type=_positive_float, help="tokens per minute, whole run")
    limits.add_argument(
        "--max-in-flight",
        type=_positive_int,
        help="model calls in flight across the run, nested ones included (default: --concurrency)",
    )
    limits.add_argument(
        "--item-timeout", type=_positive_float, help="deadline per item, seconds, retries included"
    )
    limits.add_argument(
        "--max-input-tokens",
        type=_positive_int,
        help="inputs estimated larger become error records without a call",
    )
    limits.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        help="seconds in-flight items get after SIGINT/SIGTERM (default 30)",
    )
    limits.add_argument(
        "--cache", type=Path, help="SQLite LLM cache: identical calls are answered from it, unpaid"
    )
    limits.add_argument("--fallback-model", help="model tried when a call to the main one fails")
    _model_flags(run)

    web = sub.add_parser(
        "serve",
        help="serve the pipelines over HTTP: API, SSE streams, a page",
        description="Serve every registered pipeline (and --pipeline ones) over HTTP: "
        "invoke, SSE stream and batch endpoints, and a page. Needs the service extra: "
        "pip install 'lc-async-pipelines[service]'.",
        epilog="example:\n  pipelines serve --port 8000 --pipeline headline=my_app.chains:build",
        formatter_class=formatter,
    )
    web.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    web.add_argument("--port", type=_number(int, 0, strict=False), default=8000, help="port")
    web.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="serve this pipeline too (repeatable)",
    )
    _model_flags(web)

    sub.add_parser("list", help="list the registered pipelines and their options")

    serve = sub.add_parser("serve-model", help="serve the embedded model until interrupted")
    serve.add_argument("--port", type=_positive_int, help="loopback port (default: a free one)")
    serve.add_argument("--parallel", type=_positive_int, default=4, help="server slots (default 4)")

    sub.add_parser("build-server", help="build and cache llama.cpp's llama-server")
    return parser


class _UsageError(Exception):
    """An argument that parses but does not fit the others; exit 2."""


@dataclass
class _Plan:
    """Everything a run needs, checked before any model server starts."""

    spec: PipelineSpec
    options: dict[str, Any]
    items: Iterable[Item]
    total: int | None
    done: set[str] = field(default_factory=set)


def _error(message: str) -> NoReturn:
    raise _UsageError(message)


def _pipeline_for(args: argparse.Namespace) -> tuple[PipelineSpec, dict[str, Any]]:
    from lc_async_pipelines.registry import PipelineSpec, load_pipeline

    if (args.target is None) == (args.prompt is None):
        _error("give a TARGET (pipeline name or module:attr) or --prompt FILE, not both")
    if args.schema and args.prompt is None:
        _error("--schema goes with --prompt")
    options: dict[str, Any] = {}
    if args.max_words is not None:
        options["max_words"] = args.max_words
    if args.outline:
        options["outline"] = True
    if args.prompt is not None:
        from lc_async_pipelines.prompt_chain import (
            build_prompt_chain,
            load_prompt_file,
            load_schema,
        )

        prompt = load_prompt_file(args.prompt)
        schema = load_schema(args.schema) if args.schema else None

        def factory(llm: Any) -> Runnable[Any, Any]:
            return build_prompt_chain(llm, prompt, schema=schema)

        spec = PipelineSpec(
            name=args.prompt.stem, factory=factory, description=str(args.prompt), input_label="row"
        )
    else:
        spec = load_pipeline(args.target)
    takes = spec.defaults()
    for name in options:
        if name not in takes:
            flag = "--" + name.replace("_", "-")
            options_text = ", ".join(takes) or "no options"
            _error(f"{flag}: pipeline {spec.name!r} takes no {name} (it takes: {options_text})")
    if spec.owns_model and (args.model or args.embedded or args.cache or args.fallback_model):
        print(
            f"pipelines: warning: {args.target} is a ready Runnable with its own model; "
            "-m, --embedded, --cache and --fallback-model do not reach it (give a factory)",
            file=sys.stderr,
        )
    return spec, options


def _input_shape(spec: PipelineSpec, options: dict[str, Any]) -> tuple[bool, list[str]]:
    """Build the chain on a stand-in model: (does it take whole rows?, the fields it requires)."""
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.runnables import Runnable

    from lc_async_pipelines.errors import ConfigurationError

    try:
        chain = spec.build(FakeListChatModel(responses=["."]), **options)
    except ConfigurationError:
        raise
    except Exception as exc:  # the user's factory: any failure is a bad target
        msg = f"pipeline {spec.name!r}: the factory failed: {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg) from None
    if not isinstance(chain, Runnable):
        msg = (
            f"pipeline {spec.name!r}: the factory returned a {type(chain).__name__}, not a Runnable"
        )
        raise ConfigurationError(msg)
    try:
        schema = chain.get_input_jsonschema()
    except Exception:  # a user chain whose input type has no JSON schema: take text
        return False, []
    if schema.get("type") == "object" or "properties" in schema:
        return True, [str(r) for r in schema.get("required", [])]
    return False, []


def _peek(items: Iterator[Item], n: int) -> tuple[list[Item], Iterator[Item]]:
    head = [item for _, item in zip(range(n), items, strict=False)]
    return head, items


def _check_rows(head: list[Item], args: argparse.Namespace, required: list[str]) -> None:
    """Fail before any server starts when the first rows cannot feed the pipeline."""
    usable = [i for i in head if i.error is None]
    if head and not usable:
        raw = _first_row_fields(args.input)
        found = f"; the first row has: {', '.join(raw)}" if raw else ""
        _error(f"{args.input}: {head[0].error}{found}")
    for item in usable[:1]:
        if isinstance(item.input, dict):
            missing = [r for r in required if r not in item.input]
            if missing:
                has = ", ".join(map(str, item.input)) or "no fields"
                _error(
                    f"{args.input} line {item.line}: no field for prompt variable "
                    f"{', '.join(map(repr, missing))}; the row has: {has}"
                )


def _first_row_fields(path: Path) -> list[str]:
    from lc_async_pipelines.runner import read_items

    try:
        first = next(iter(read_items(path, whole_rows=True)), None)
    except Exception:  # only for the message: an unreadable file says so elsewhere
        return []
    return [str(k) for k in first.input] if first and isinstance(first.input, dict) else []


def _plan(args: argparse.Namespace) -> _Plan:
    spec, options = _pipeline_for(args)  # first: a wrong target answers before LangChain loads

    from lc_async_pipelines.runner import count_items, prepare_resume, read_items

    whole_rows, required = _input_shape(spec, options)
    if args.field and whole_rows:
        _error(f"--field: pipeline {spec.name!r} takes whole rows (fields: {', '.join(required)})")
    text_key = required[0] if len(required) == 1 else "input"
    items = read_items(
        args.input,
        field=args.field,
        id_field=args.id_field,
        whole_rows=whole_rows,
        text_key=text_key,
    )
    head, rest = _peek(items, 5)
    _check_rows(head, args, required)
    if args.output.exists() and args.output.is_dir():
        _error(
            f"--output {args.output}: is a folder; give a file such as {args.output}/records.jsonl"
        )
    if args.output.resolve() == args.input.resolve():
        _error("--output is the input file; give another file for the records")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.restart:
        args.output.unlink(missing_ok=True)
    done = prepare_resume(args.output)
    total = count_items(args.input)
    if total is not None:
        total = max(0, min(total, args.limit if args.limit is not None else total) - len(done))
    return _Plan(spec, options, _chain_items(head, rest), total, done)


def _chain_items(head: list[Item], rest: Iterator[Item]) -> Iterator[Item]:
    yield from head
    yield from rest


async def _run(args: argparse.Namespace, plan: _Plan) -> int:
    import asyncio
    import json
    import signal

    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines._progress import progress_bar
    from lc_async_pipelines.callbacks import TerminalStreamHandler
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.runner import RateBudget, RetryPolicy, RunOptions, run_items
    from lc_async_pipelines.runner import write_records as write
    from lc_async_pipelines.runner.core import summary_path
    from lc_async_pipelines.session import model_session

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    if plan.done:
        print(f"resuming: {len(plan.done)} items already done in {args.output}", file=sys.stderr)
    callbacks = [TerminalStreamHandler(tagged=args.concurrency > 1)] if args.stream else []
    config = RunnableConfig(max_concurrency=args.concurrency, callbacks=callbacks)  # type: ignore[typeddict-item]
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        received.append(sig)
        print(f"stopping: no new items; in flight get {args.grace:g} s", file=sys.stderr)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    budget = RateBudget(
        rpm=args.rpm, tpm=args.tpm, max_in_flight=args.max_in_flight or args.concurrency
    )
    retry = RetryPolicy(max_retries=args.max_retries)
    options = RunOptions(
        concurrency=args.concurrency,
        retry=retry,
        limit=args.limit,
        skip=frozenset(plan.done),
        stop=stop,
        grace_s=args.grace,
        item_timeout_s=args.item_timeout,
        max_input_tokens=args.max_input_tokens,
    )
    async with model_session(
        settings,
        budget=budget,
        cache=args.cache,
        fallback_model=args.fallback_model,
        parallel=args.concurrency,
        retry=retry,
    ) as session:
        print(f"pipelines: {plan.spec.name} on {session.description}", file=sys.stderr)
        chain = plan.spec.build(session.llm, **plan.options)
        records = run_items(chain, plan.items, options, config=config)
        with args.output.open("a", encoding="utf-8") as out, progress_bar(plan.total) as tick:
            summary = await write(records, out, on_record=tick)
        totals = summary.as_dict()
        totals["requests_sent"] = budget.requests_sent
        totals["cache_hits"] = getattr(session.cache, "hits", 0)
    summary_path(args.output).write_text(json.dumps(totals, indent=2) + "\n")
    print(json.dumps({"summary": totals}), file=sys.stderr)
    if received:
        return 128 + received[0]  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    return 0 if summary.failed == 0 else 1


def _list() -> int:
    from lc_async_pipelines.registry import registered_pipelines

    for name, spec in registered_pipelines().items():
        options = ", ".join(f"{k}={v!r}" for k, v in spec.defaults().items())
        print(f"{name:12} {spec.description}")
        print(f"{'':12} input: {spec.input_label}; options: {options or 'none'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    try:
        import uvicorn

        from lc_async_pipelines.service import create_app
    except ImportError as exc:
        _error(
            f"pipelines serve needs the service extra ({exc.name} is missing): "
            "pip install 'lc-async-pipelines[service]'"
        )
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import load_pipeline, registered_pipelines

    specs = dict(registered_pipelines())
    for entry in args.pipeline:
        name, sep, target = entry.partition("=")
        if not sep or not name or ":" not in target:
            _error(f"--pipeline {entry!r}: expected NAME=package.module:attr")
        specs[name] = _named(load_pipeline(target), name)
    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lc_async_pipelines").setLevel(logging.INFO)
    app = create_app(model_settings=settings, pipelines=specs)
    print(f"page and API at http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


def _named(spec: PipelineSpec, name: str) -> PipelineSpec:
    import dataclasses

    return dataclasses.replace(spec, name=name)


def _serve_model(args: argparse.Namespace) -> int:
    import signal
    import threading

    from lc_async_pipelines.embedded import EmbeddedModelServer

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedModelServer(parallel=args.parallel, port=args.port) as server:
        print(f"embedded model at {server.base_url}", flush=True)
        print(f"share it: export PIPELINES_EMBEDDED_URL={server.base_url}", flush=True)
        while not stop.wait(1.0) and server.running:
            pass
    return 0


def _build_server() -> int:
    from lc_async_pipelines._llama_build import build_llama_server, find_llama_server

    print(find_llama_server() or build_llama_server())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    0: all items done; 1: some failed; 2: bad arguments, input file, target,
    model settings or embedded model; 130/143: stopped by SIGINT/SIGTERM (resumable).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from lc_async_pipelines.errors import ConfigurationError, EmbeddedModelError, InputError

    try:
        if args.command == "run":
            plan = _plan(args)  # every check before any import of the model stack
            import asyncio

            return asyncio.run(_run(args, plan))
        if args.command == "serve":
            return _serve(args)
        if args.command == "list":
            return _list()
        if args.command == "serve-model":
            return _serve_model(args)
        return _build_server()
    except (_UsageError, ConfigurationError, InputError, EmbeddedModelError) as exc:
        print(f"pipelines: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
