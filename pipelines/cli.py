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

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import PipelineSpec
    from lc_async_pipelines.runner import Item
    from lc_async_pipelines.runner.inputs import ItemReader
    from lc_async_pipelines.runner.records import RunFile

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
Exit: 0 all done, 1 some items failed, 2 bad arguments or input, 3 stopped at
--max-cost (run again with a higher cap), 130/143 stopped.

Batch API and costs:
  pipelines run summary --input docs.jsonl --output out/s.jsonl --dry-run -m gpt-4o-mini
  pipelines run summary --input docs.jsonl --output out/s.jsonl --batch-api --max-cost 5
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


class _Parser(argparse.ArgumentParser):
    """argparse, but an argument error is one line and a pointer to --help, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(
    kind: type[int] | type[float],
    minimum: float,
    *,
    strict: bool,
    maximum: float | None = None,
) -> Callable[[str], Any]:
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
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_MAX_WORDS = 5_000  # about 8,000 tokens: more than any model here writes in one reply
_positive_int = _number(int, 0, strict=True)
_count = _number(int, 0, strict=False)
_positive_float = _number(float, 0, strict=True)
_seconds = _number(float, 0, strict=False)


def _shared_flags(group: Any) -> None:
    """--budget, --budget-key, --cache and --cache-ttl: limits and cache shared by runs."""
    group.add_argument(
        "--budget",
        metavar="URL",
        help="share RPM, TPM and 429 pauses with every run using this Redis "
        "(redis://HOST:PORT/DB); default: this run's own, in memory",
    )
    group.add_argument(
        "--budget-key",
        metavar="KEY",
        help="the shared budget's name (default: derived from the endpoint and model)",
    )
    group.add_argument(
        "--cache",
        metavar="FILE|URL",
        help="LLM cache: identical calls are answered from it, unpaid; an SQLite file, "
        "or redis://HOST:PORT/DB shared by runs",
    )
    group.add_argument(
        "--cache-ttl",
        type=_positive_float,
        metavar="S",
        help="seconds a Redis cache entry lives (default: for ever)",
    )


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
    parser = _Parser(
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
    opts.add_argument(
        "--max-words",
        type=_number(int, 0, strict=True, maximum=_MAX_WORDS),
        help=f"target output length in words; summaries: within ±30%%, never over 1.3x "
        f"(1 to {_MAX_WORDS:,})",
    )
    opts.add_argument("--outline", action="store_true", help="story: outline first, then story")
    limits = run.add_argument_group("concurrency, budget and retries")
    limits.add_argument(
        "--concurrency",
        type=_positive_int,
        help="items in flight (default 4; 10,000 with --batch-api, so a stage fills a batch)",
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
        help="inputs estimated larger become error records without a call (default: the "
        "model's context window, PIPELINES_CONTEXT_TOKENS; 4096 for the embedded model)",
    )
    limits.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        help="seconds in-flight items get after SIGINT/SIGTERM (default 30)",
    )
    _shared_flags(limits)
    limits.add_argument("--fallback-model", help="model tried when a call to the main one fails")
    costs = run.add_argument_group("Batch API and costs")
    costs.add_argument(
        "--batch-api",
        action="store_true",
        help="send the model calls through the provider's Batch API (OpenAI /v1/batches): "
        "about half the price, results within 24 h; resumable",
    )
    costs.add_argument(
        "--batch-retry",
        choices=("batch", "request"),
        default="batch",
        help="failed batch lines: retry in the next batch (default) or as single requests",
    )
    costs.add_argument(
        "--batch-window",
        type=_positive_float,
        default=600.0,
        help="longest a stage waits for more calls before it is sent, seconds (default 600)",
    )
    costs.add_argument(
        "--max-enqueued-tokens",
        type=_positive_int,
        help="your tier's Batch API enqueued-token limit per model",
    )
    costs.add_argument(
        "--prices", type=Path, help="price table JSON over the shipped one (USD per 1M tokens)"
    )
    costs.add_argument(
        "--max-cost",
        type=_number(float, 0, strict=False),
        metavar="USD",
        help="cap for the whole run: no new item once spent + in-flight estimate would pass "
        "it (exit 3; run again with a higher cap to go on)",
    )
    costs.add_argument(
        "--dry-run",
        action="store_true",
        help="render every prompt; print estimated tokens, cost and wall time; call no model",
    )
    engine = run.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: Ray actors, each with its own "
        "--concurrency window, this process the only writer",
    )
    engine.add_argument(
        "--workers", type=_positive_int, help="--engine ray: worker actors (default 2)"
    )
    engine.add_argument(
        "--address", help="--engine ray: a running Ray cluster (default: start one here)"
    )
    _model_flags(run)

    _news_parser(sub, formatter)

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
    web.add_argument(
        "--port", type=_number(int, 0, strict=False, maximum=65_535), default=8000, help="port"
    )
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
    serve.add_argument(
        "--port",
        type=_number(int, 0, strict=True, maximum=65_535),
        help="loopback port (default: a free one)",
    )
    serve.add_argument("--parallel", type=_positive_int, default=4, help="server slots (default 4)")

    sub.add_parser("build-server", help="build and cache llama.cpp's llama-server")
    return parser


_NEWS_EXAMPLES = """\
examples:
  pipelines news --sources feeds.txt --output out/news.jsonl --deadline 600
  pipelines news --sources feeds.txt -m openai:gpt-4o-mini --tools agent --rpm 500

SOURCES holds one feed URL a line (RSS, Atom or JSON Feed; # starts a comment).
Every feed is fetched at once; each article is fetched, read and analysed, and
its record is written and shown as it completes. A feed or article that fails
becomes one error record naming its URL and the cause. Running the same command
again resumes. Exit: 0 all done, 1 some failed or the deadline passed, 2 bad
arguments, 130/143 stopped.
"""


def _news_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    news = sub.add_parser(
        "news",
        help="fetch news feeds and analyse every article, shown as each completes",
        description="Fetch news feeds concurrently and analyse every article with the "
        "model (summary, topic, tone, key facts, names): one JSON record per article.",
        epilog=_NEWS_EXAMPLES,
        formatter_class=formatter,
    )
    io = news.add_argument_group("input and output")
    io.add_argument("--sources", required=True, type=Path, help="feed URLs, one a line")
    io.add_argument(
        "--output", type=Path, default=Path("out/news.jsonl"), help="records (out/news.jsonl)"
    )
    io.add_argument("--restart", action="store_true", help="start over instead of resuming")
    io.add_argument("--limit", type=_count, help="analyse at most N articles")
    io.add_argument("--per-source", type=_positive_int, help="at most N articles from each feed")
    io.add_argument("--quiet", action="store_true", help="no line per article")
    task = news.add_argument_group("analysis")
    task.add_argument(
        "--max-words",
        type=_number(int, 4, strict=True, maximum=2000),
        default=40,
        help="summary length in words (default 40)",
    )
    task.add_argument(
        "--tools",
        choices=("auto", "fixed", "agent"),
        default="auto",
        help="agent: a tool-calling model calls the tools; fixed: the tools run as fixed "
        "steps (auto: fixed on the embedded model, agent otherwise)",
    )
    fetch = news.add_argument_group("fetching")
    fetch.add_argument(
        "--deadline", type=_positive_float, help="overall deadline, seconds; the rest resumes"
    )
    fetch.add_argument(
        "--per-host", type=_positive_int, default=4, help="requests in flight per host (4)"
    )
    fetch.add_argument(
        "--fetch-timeout", type=_positive_float, default=15.0, help="read timeout, seconds (15)"
    )
    fetch.add_argument(
        "--max-bytes", type=_positive_int, default=5_000_000, help="size cap per page (5 MB)"
    )
    fetch.add_argument(
        "--allow-private-addresses",
        action="store_true",
        help="let feeds' links and redirects reach loopback and private addresses "
        "(off: only the sources file's own hosts may)",
    )
    limits = news.add_argument_group("concurrency, budget and retries")
    limits.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="model calls at once (default 4); pages are fetched 4 times as far ahead",
    )
    limits.add_argument(
        "--max-retries", type=_count, default=3, help="retries of each model call (3)"
    )
    limits.add_argument("--rpm", type=_positive_float, help="requests per minute")
    limits.add_argument("--tpm", type=_positive_float, help="tokens per minute")
    limits.add_argument(
        "--item-timeout", type=_positive_float, help="deadline per article, seconds"
    )
    _shared_flags(limits)
    _model_flags(news)


class _UsageError(Exception):
    """An argument that parses but does not fit the others; exit 2."""


@dataclass
class _Plan:
    """Everything a run needs, checked before any model server starts."""

    spec: PipelineSpec
    options: dict[str, Any]
    items: Iterable[Item]
    total: int | None
    run: RunFile
    reader: ItemReader
    settings: ModelSettings
    max_input_tokens: int | None = None
    done: set[str] = field(default_factory=set)
    prices: Any = None


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


def _input_shape(
    spec: PipelineSpec, options: dict[str, Any]
) -> tuple[bool, list[str], list[str] | None]:
    """Build the chain on a stand-in model: whole rows?, required fields, the fields it reads."""
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
        return False, [], None
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties")
        reads = (
            [str(k) for k in properties] if isinstance(properties, dict) and properties else None
        )
        return True, [str(r) for r in schema.get("required", [])], reads
    return False, [], None


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
                # The row as the file has it: the item holds only the fields the chain reads.
                has = ", ".join(_first_row_fields(args.input)) or "no fields"
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


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_paths(
    args: argparse.Namespace, flag: str = "--input", kinds: str = "a .jsonl, .json, .csv or .txt"
) -> None:
    """Standard-library checks of the input (``flag``), --output and --cache; no change."""
    if str(args.input) == "-" or str(args.output) == "-":
        _error(f"standard input and output are not supported; give files for {flag} and --output")
    if args.input.is_dir():
        _error(f"{flag} {args.input}: is a folder; give {kinds} file")
    if not args.input.exists():
        _error(f"{flag} {args.input}: no such file")
    if args.output.is_dir():
        _error(f"--output {args.output}: is a folder; give a file, e.g. {args.output}/out.jsonl")
    if args.output.resolve() == args.input.resolve():
        _error(f"--output is the {flag} file; give another file for the records")
    for parent in args.output.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                _error(f"--output {args.output}: {parent} is a file, not a folder")
            break
    _check_shared(args)
    if args.cache is not None and "://" not in args.cache:
        cache_file = Path(args.cache)
        cache = cache_file.resolve()
        if cache in (args.output.resolve(), args.input.resolve()):
            _error(f"--cache {args.cache}: is the {flag} or --output file; give its own file")
        if cache_file.is_dir():
            _error(f"--cache {args.cache}: is a folder; give a file, e.g. {args.cache}/llm.sqlite")
        if cache_file.is_file() and cache_file.stat().st_size:
            with cache_file.open("rb") as fh:
                if fh.read(16) != _SQLITE_MAGIC:
                    _error(f"--cache {args.cache}: is not an SQLite file; give a new or cache file")


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_shared(args: argparse.Namespace) -> None:
    """--budget and --cache URLs: a Redis scheme; --cache-ttl only with a Redis cache."""
    from lc_async_pipelines._scrub import scrub

    if args.budget is not None and not args.budget.lower().startswith(_REDIS_SCHEMES):
        _error(f"--budget {scrub(args.budget)!r}: give a redis://HOST:PORT/DB URL")
    cache = args.cache or ""
    if "://" in cache and not cache.lower().startswith(_REDIS_SCHEMES):
        _error(f"--cache {scrub(cache)!r}: give an SQLite file or a redis://HOST:PORT/DB URL")
    if args.cache_ttl is not None and "://" not in cache:
        _error("--cache-ttl: only a Redis cache (--cache redis://...) expires its entries")
    if args.budget_key is not None and args.budget is None:
        _error("--budget-key goes with --budget")


def _input_cap(args: argparse.Namespace, spec: PipelineSpec, settings: ModelSettings) -> int | None:
    """--max-input-tokens, else the model's context window unless the pipeline chunks inputs."""
    given: int | None = args.max_input_tokens
    if given is not None or spec.splits_long_inputs or spec.owns_model:
        return given
    return settings.context_window


def _model_identity(args: argparse.Namespace, spec: PipelineSpec, settings: ModelSettings) -> str:
    """The model as the manifest records it: stable across sessions (no port, no key source)."""
    from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME
    from lc_async_pipelines.models import OPENAI_URL

    if spec.owns_model:
        return "the Runnable's own model"
    if settings.uses_embedded:
        if args.model and args.embedded:
            _error(f"-m {args.model}: --embedded runs the embedded model; drop one of them")
        if args.model and settings.provider is None:
            _error(
                f"-m {args.model}: no endpoint is configured (OPENAI_BASE_URL or "
                "OPENAI_API_KEY), so the embedded model would run; set one or drop -m"
            )
        return f"{EMBEDDED_MODEL_NAME} (embedded)"
    if settings.provider not in (None, "openai"):
        return f"{settings.provider}:{settings.model_name}"
    from lc_async_pipelines._scrub import scrub

    name = settings.model_name or "(asked of the endpoint)"
    return f"{name} at {scrub(settings.base_url or OPENAI_URL)}"  # a password in the URL


def _fingerprint(args: argparse.Namespace, options: dict[str, Any]) -> str:
    from lc_async_pipelines.runner.records import chain_fingerprint

    def text(path: Path | str | None) -> str | None:
        if path is None or not Path(path).is_file():
            return None if path is None else str(path)
        return Path(path).read_text(encoding="utf-8", errors="replace")

    return chain_fingerprint(
        {
            "target": args.target,
            "prompt": text(args.prompt),
            "schema": text(args.schema),
            "options": options,
            "field": args.field,
            "id_field": args.id_field,
        }
    )


_NO_BATCH_EMBEDDED = "--batch-api: the embedded model has no Batch API; use an OpenAI endpoint"


def _check_engine(args: argparse.Namespace) -> None:
    if args.prices is not None and not args.prices.is_file():
        what = "is a folder" if args.prices.is_dir() else "no such file"
        _error(f"--prices {args.prices}: {what}; give a price table JSON file")
    if args.batch_api:
        if args.engine == "ray":
            _error("--batch-api: one process collects the calls into batches; drop --engine ray")
        if args.stream:
            _error("--stream: Batch API replies come whole, not as tokens; drop --stream")
    if args.max_cost is not None and args.engine == "ray":
        _error("--max-cost: one run-wide cap needs one process; drop --engine ray")
    if not args.batch_api:
        for flag, given in (
            ("--batch-retry", args.batch_retry != "batch"),
            ("--batch-window", args.batch_window != 600.0),
            ("--max-enqueued-tokens", args.max_enqueued_tokens is not None),
        ):
            if given:
                _error(f"{flag} goes with --batch-api")
    if args.engine != "ray":
        for flag, value in (("--workers", args.workers), ("--address", args.address)):
            if value is not None:
                _error(f"{flag} goes with --engine ray")
        return
    if args.stream:
        _error("--stream: tokens stay on the Ray workers; drop --stream or --engine ray")
    if args.cache is not None and "://" not in args.cache:
        _error(
            f"--cache {args.cache}: Ray workers need a shared cache, redis://HOST:PORT/DB "
            "(one SQLite file cannot serve processes on many machines)"
        )


def _plan(args: argparse.Namespace) -> _Plan:
    _check_paths(args)  # first: a wrong path answers before LangChain loads
    _check_engine(args)
    spec, options = _pipeline_for(args)
    if args.engine == "ray" and spec.owns_model:
        _error(f"--engine ray: {args.target} is a ready Runnable; Ray needs a factory to ship")
    from lc_async_pipelines.models import ModelSettings

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    model = _model_identity(args, spec, settings)
    if args.batch_api and settings.uses_embedded:
        _error(_NO_BATCH_EMBEDDED + (" (drop --embedded)" if args.embedded else ""))

    from lc_async_pipelines.runner import count_items, read_items
    from lc_async_pipelines.runner.records import RunManifest, open_run

    whole_rows, required, reads = _input_shape(spec, options)
    if args.field and whole_rows:
        _error(f"--field: pipeline {spec.name!r} takes whole rows (fields: {', '.join(required)})")
    text_key = required[0] if len(required) == 1 else "input"
    items = read_items(
        args.input,
        field=args.field,
        id_field=args.id_field,
        whole_rows=whole_rows,
        text_key=text_key,
        keep_fields=reads,
    )
    head, rest = _peek(items, 5)
    _check_rows(head, args, required)
    prices = _prices(args, settings)  # a bad price file: exit 2 before anything is written
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _error(f"--output {args.output}: cannot make its folder ({exc.strerror})")
    total = count_items(args.input)
    manifest = RunManifest.new(
        pipeline=str(args.prompt) if args.prompt else args.target,
        fingerprint=_fingerprint(args, options),
        model=model,
        input=args.input,
        options=options,
    )
    _check_budget(args, settings)  # Redis unreachable: exit 2 with the output untouched
    try:  # last: it takes the lock, which only the caller's `with` releases
        run = open_run(args.output, manifest, restart=args.restart)
    except OSError as exc:
        _error(f"--output {args.output}: cannot be written ({exc.strerror})")
    done = set(run.done_ids)
    if total is not None:
        total = max(0, min(total, args.limit if args.limit is not None else total) - len(done))
    cap = _input_cap(args, spec, settings)
    return _Plan(
        spec, options, _chain_items(head, rest), total, run, items, settings, cap, done, prices
    )


def _prices(args: argparse.Namespace, settings: Any) -> Any:
    """The price table (--prices over the shipped one); --max-cost needs the model's price."""
    from lc_async_pipelines.runner.costs import load_prices

    prices = load_prices(args.prices)
    if args.max_cost is not None and not settings.uses_embedded:
        name = settings.model_name
        if name is None or prices.price_of(name) is None:
            shown = name or "the endpoint's model (give -m)"
            _error(f"--max-cost: no price for {shown}; give one with --prices FILE")
    return prices


def _dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: every prompt rendered on a stand-in model; tokens, cost, time; no call."""
    _check_paths(args)
    _check_engine(args)
    spec, options = _pipeline_for(args)
    import asyncio
    import json

    from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME
    from lc_async_pipelines.models import DEFAULT_OPENAI_MODEL, ModelSettings
    from lc_async_pipelines.runner import read_items
    from lc_async_pipelines.runner.costs import estimate_run
    from lc_async_pipelines.runner.records import done_ids

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    if args.batch_api and settings.uses_embedded:
        _error(_NO_BATCH_EMBEDDED + (" (drop --embedded)" if args.embedded else ""))
    prices = _prices(args, settings)
    whole_rows, required, reads = _input_shape(spec, options)
    if args.field and whole_rows:
        _error(f"--field: pipeline {spec.name!r} takes whole rows (fields: {', '.join(required)})")
    items = read_items(
        args.input,
        field=args.field,
        id_field=args.id_field,
        whole_rows=whole_rows,
        text_key=required[0] if len(required) == 1 else "input",
        keep_fields=reads,
    )
    if settings.uses_embedded:
        model = EMBEDDED_MODEL_NAME
    else:
        model = settings.model_name or (
            DEFAULT_OPENAI_MODEL if not settings.base_url else "(unnamed: give -m to price it)"
        )
    estimate = asyncio.run(
        estimate_run(
            lambda llm: spec.build(llm, **options),
            items,
            model=model,
            prices=prices,
            batch=args.batch_api,
            max_tokens=settings.max_tokens or 512,
            rpm=args.rpm,
            tpm=args.tpm,
            limit=args.limit,
            skip=frozenset(done_ids(args.output)),
            max_input_tokens=_input_cap(args, spec, settings),
        )
    )
    print(estimate.describe(), file=sys.stderr)
    print(json.dumps({"estimate": estimate.to_dict()}))
    return 0


def _chain_items(head: list[Item], rest: Iterator[Item]) -> Iterator[Item]:
    yield from head
    yield from rest


async def _run(args: argparse.Namespace, plan: _Plan) -> int:
    import asyncio
    import contextlib
    import dataclasses
    import json
    import signal

    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines._progress import progress_bar
    from lc_async_pipelines.callbacks import TerminalStreamHandler
    from lc_async_pipelines.runner import RetryPolicy, RunOptions, run_items
    from lc_async_pipelines.runner import write_records as write
    from lc_async_pipelines.session import model_session

    run = plan.run
    if run.backup is not None:
        print(f"restart: the previous records were moved to {run.backup}", file=sys.stderr)
    if run.adopted:
        print(f"resuming records written without a manifest in {args.output}", file=sys.stderr)
    if plan.done:
        dropped = run.prior.dropped_failed + run.prior.dropped_partial
        again = f"; {dropped} failed or cut records run again" if dropped else ""
        print(
            f"resuming: {len(plan.done)} items already done in {args.output}{again}",
            file=sys.stderr,
        )
    callbacks = [TerminalStreamHandler(tagged=args.concurrency > 1)] if args.stream else []
    config = RunnableConfig(max_concurrency=args.concurrency, callbacks=callbacks)  # type: ignore[typeddict-item]
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    main_task = asyncio.current_task()

    def on_signal(sig: int) -> None:
        received.append(sig)
        if len(received) > 1 and main_task is not None:  # a second signal: stop now
            print("stopping now; items in flight run again on resume", file=sys.stderr)
            main_task.cancel()
            return
        print(
            f"stopping: no new items; in flight get {args.grace:g} s (again to stop now)",
            file=sys.stderr,
        )
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    budget = _budget(args, plan.settings, args.max_in_flight or args.concurrency)
    batch = None
    if args.batch_api:
        from lc_async_pipelines.runner.batch import BatchLimits, BatchOptions, batches_path
        from lc_async_pipelines.runner.limits import RateBudget

        if args.rpm or args.tpm or args.max_in_flight or args.budget:
            print(
                "pipelines: warning: --rpm, --tpm, --max-in-flight and --budget do not apply "
                "to the Batch API (a call held back would miss its stage)",
                file=sys.stderr,
            )
        batch = BatchOptions(
            state_path=batches_path(run.output),
            retry=args.batch_retry,
            window_s=args.batch_window,
            limits=BatchLimits(max_tokens=args.max_enqueued_tokens),
        )
        budget = RateBudget()  # unlimited: batches have no RPM or TPM
        # no max_concurrency: every chunk of a map-reduce joins the same stage
        config = RunnableConfig(callbacks=callbacks)  # type: ignore[typeddict-item]
    retry = RetryPolicy(max_retries=args.max_retries)
    options = RunOptions(
        concurrency=args.concurrency,
        retry=retry,
        limit=args.limit,
        skip=frozenset(plan.done),
        stop=stop,
        grace_s=args.grace,
        item_timeout_s=args.item_timeout,
        max_input_tokens=plan.max_input_tokens,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(budget)  # Redis unreachable: exit 2 before any model
        if args.engine == "ray":
            from lc_async_pipelines.engines import ChainRecipe, run_items_on_ray
            from lc_async_pipelines.models import describe

            # The workers build their own sessions; the driver only writes.
            recipe = ChainRecipe(
                plan.spec,
                plan.options,
                plan.settings,
                budget_url=args.budget,
                budget_key=args.budget_key or getattr(budget, "key", None),
                rpm=args.rpm,
                tpm=args.tpm,
                cache=args.cache,
                cache_ttl_s=args.cache_ttl,
                concurrency=args.concurrency,
                max_in_flight=args.max_in_flight,
                fallback_model=args.fallback_model,
                retry=retry,
            )
            workers = args.workers or 2
            where = f"{workers} Ray workers on {args.address or 'a local Ray'}; "
            where += describe(plan.settings, plan.settings.base_url)
            records = run_items_on_ray(
                recipe, plan.items, options, workers=workers, address=args.address
            )
            cache: Any = None
            meter = None
            batch_session = None
        else:
            session = await stack.enter_async_context(
                model_session(
                    plan.settings,
                    budget=budget,
                    cache=args.cache,
                    cache_ttl_s=args.cache_ttl,
                    fallback_model=args.fallback_model,
                    parallel=args.concurrency,
                    retry=retry,
                    batch=batch,
                )
            )
            from lc_async_pipelines.runner.costs import CostMeter

            meter = CostMeter(
                plan.prices,
                model=session.settings.model_name,
                batch=args.batch_api,
                max_cost_usd=args.max_cost,
                prior_usd=run.prior.cost_usd,
                output_tokens=plan.settings.max_tokens or 512,
            )
            options = dataclasses.replace(options, costs=meter)
            where = session.description
            if args.batch_api:
                where += ", through the Batch API"
            if plan.spec.owns_model:
                where = "a ready Runnable with its own model"
            chain = plan.spec.build(session.llm, **plan.options)
            records = run_items(chain, plan.items, options, config=config)
            cache = session.cache
            batch_session = session.batch
        print(f"pipelines: {plan.spec.name} on {where}", file=sys.stderr)
        try:
            with progress_bar(plan.total) as tick:
                summary = await write(records, run.out, on_record=tick)
        except asyncio.CancelledError:
            return 128 + received[0] if received else 130
        extra: dict[str, Any] = {
            "duplicates_skipped": plan.reader.duplicates,
            "id_collisions": plan.reader.collisions,
        }
        if args.engine == "local":  # Ray workers count their own; they are not summed here
            extra["requests_sent"] = budget.requests_sent
            extra["cache_hits"] = getattr(cache, "hits", 0)
        if meter is not None:
            extra["cost_capped"] = meter.capped
        if batch_session is not None:
            extra["batch"] = batch_session.stats.as_dict()
    totals = run.finish(summary, extra)
    print(json.dumps({"summary": totals}), file=sys.stderr)
    if received:
        return 128 + received[0]  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    if meter is not None and meter.capped:
        print(
            f"pipelines: stopped at --max-cost ${args.max_cost:g}: ${meter.spent_usd:.4f} spent "
            "over the run; give the same command with a higher --max-cost to go on",
            file=sys.stderr,
        )
        return 3
    return 0 if summary.failed == 0 else 1


def _check_budget(args: argparse.Namespace, settings: Any) -> None:
    """A Redis of --budget or --cache not answering: exit 2 before the output is touched.

    BudgetUnavailable or CacheUnavailable; a mistyped cache URL would
    otherwise send every call to the model with only a warning.
    """
    cache = getattr(args, "cache", None)
    shared_cache = isinstance(cache, str) and "://" in cache
    if args.budget is None and not shared_cache:
        return
    import asyncio

    from lc_async_pipelines.runner.caches import RedisCache, open_cache

    async def reach() -> None:
        if args.budget is not None:
            async with _budget(args, settings, 1):
                pass
        opened = open_cache(cache, ttl_s=args.cache_ttl) if shared_cache else None
        if isinstance(opened, RedisCache):
            await opened.connect()
            await opened.aclose()

    asyncio.run(reach())


def _budget(args: argparse.Namespace, settings: Any, max_in_flight: int) -> Any:
    """The run's budget: in memory, or shared through the Redis of --budget."""
    from lc_async_pipelines.runner import open_budget

    return open_budget(
        args.budget,
        key=args.budget_key,
        base_url=settings.base_url,
        model=settings.model,
        rpm=args.rpm,
        tpm=args.tpm,
        max_in_flight=max_in_flight,
    )


def _news(args: argparse.Namespace) -> int:
    """``pipelines news``: checks first, then the run (:func:`_news_run`)."""
    args.input = args.sources
    _check_paths(args, "--sources", "a text file of feed URLs (one a line)")
    from lc_async_pipelines.news import read_sources
    from lc_async_pipelines.registry import load_pipeline

    sources = read_sources(args.sources)
    spec = load_pipeline("news")
    from lc_async_pipelines.models import ModelSettings

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    model = _model_identity(args, spec, settings)
    tools = args.tools
    if tools == "auto":
        tools = "fixed" if settings.uses_embedded else "agent"
    elif tools == "agent" and settings.uses_embedded:
        _error("--tools agent: the embedded model cannot call tools; use --tools fixed")
    from lc_async_pipelines.runner.records import RunManifest, chain_fingerprint, open_run

    options = {"max_words": args.max_words, "tools": tools, "per_source": args.per_source}
    manifest = RunManifest.new(
        pipeline="news",
        fingerprint=chain_fingerprint({"target": "news --sources", "options": options}),
        model=model,
        input=args.sources,
        options=options,
    )
    _check_budget(args, settings)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        run = open_run(args.output, manifest, restart=args.restart)
    except OSError as exc:
        _error(f"--output {args.output}: cannot be written ({exc.strerror})")
    import asyncio

    with run:
        return asyncio.run(_news_run(args, run, sources, settings, tools))


def _news_line(record: Any) -> str:
    """One line per finished article: tone, topic and title, or the error."""
    seconds = f"{record.latency_s:5.1f} s"
    if not record.ok:
        error = record.error or {}
        return f"✗ {seconds}  {record.input}  {error.get('type')}: {error.get('message')}"[:300]
    out = record.output if isinstance(record.output, dict) else record.output.model_dump()
    analysis = out.get("analysis", {})
    title = out.get("title") or out.get("url")
    return f"✓ {seconds}  {analysis.get('tone', ''):8} {analysis.get('topic', '')[:24]:24} {title}"


async def _news_run(
    args: argparse.Namespace, run: RunFile, sources: list[str], settings: Any, tools: str
) -> int:
    import asyncio
    import json
    import signal

    from lc_async_pipelines._progress import progress_bar
    from lc_async_pipelines.news import (
        Fetcher,
        FetchLimits,
        analyse_news,
        build_news_agent,
        build_news_tool_chain,
        news_tools,
    )
    from lc_async_pipelines.runner import RetryPolicy, RunOptions
    from lc_async_pipelines.runner import write_records as write
    from lc_async_pipelines.session import model_session

    done = set(run.done_ids)
    if done:
        print(f"resuming: {len(done)} records already done in {args.output}", file=sys.stderr)
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, on_signal, sig)
    retry = RetryPolicy(max_retries=args.max_retries)
    # Pages are fetched ahead of the model: 4 articles in flight per model
    # call, so a broken link fails at once instead of waiting for a model slot.
    budget = _budget(args, settings, args.concurrency)
    options = RunOptions(
        concurrency=args.concurrency * 4,
        retry=retry,
        limit=args.limit,
        skip=frozenset(done),
        stop=stop,
        grace_s=0.0,
        item_timeout_s=args.item_timeout,
    )
    limits = FetchLimits(
        per_host=args.per_host,
        read_timeout_s=args.fetch_timeout,
        max_bytes=args.max_bytes,
        max_articles_per_source=args.per_source,
        allow_private_addresses=args.allow_private_addresses,
    )
    async with (
        budget,
        model_session(
            settings,
            budget=budget,
            cache=args.cache,
            cache_ttl_s=args.cache_ttl,
            parallel=args.concurrency,
            retry=retry,
        ) as session,
        Fetcher(limits) as fetcher,
    ):
        print(f"pipelines: news ({tools} tools) on {session.description}", file=sys.stderr)
        toolset = news_tools(fetcher)
        build = build_news_agent if tools == "agent" else build_news_tool_chain
        chain = build(session.llm, toolset, max_words=args.max_words)
        records = analyse_news(
            sources,
            chain,
            fetcher,
            options,
            deadline_s=args.deadline,
        )
        with progress_bar(None) as tick:

            def show(record: Any) -> None:
                if not args.quiet:
                    print(_news_line(record), flush=True)
                tick(record)

            summary = await write(records, run.out, on_record=show)
        extra = {"requests_sent": budget.requests_sent, "sources": len(sources)}
    totals = run.finish(summary, extra)
    print(json.dumps({"summary": totals}), file=sys.stderr)
    if received:
        return 128 + received[0]
    return 0 if summary.failed == 0 else 1


def _list() -> int:
    from lc_async_pipelines.registry import registered_pipelines

    for name, spec in registered_pipelines().items():
        options = ", ".join(f"{k}={v!r}" for k, v in spec.defaults().items())
        print(f"{name:12} {spec.description}")
        print(f"{'':12} input: {spec.input_label}; options: {options or 'none'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import re

    try:
        from lc_async_pipelines.service import ServiceSettings, create_app, serve
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
        if (
            not sep
            or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name)
            or ":" not in target
        ):
            _error(
                f"--pipeline {entry!r}: expected NAME=package.module:attr, "
                "NAME of letters, digits, '_', '-', '.'"
            )
        if name in specs:
            print(
                f"pipelines: warning: --pipeline {name} replaces the registered one",
                file=sys.stderr,
            )
        spec = dataclasses.replace(load_pipeline(target), name=name)
        _input_shape(spec, {})  # a factory that fails, or returns no Runnable: exit 2 now
        specs[name] = spec
    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lc_async_pipelines").setLevel(logging.INFO)
    service_settings = ServiceSettings.from_env()
    if service_settings.budget_url is not None:  # unreachable: exit 2 now, not at startup
        import asyncio

        async def reachable() -> None:
            async with service_settings.new_budget(settings.base_url, settings.model):
                pass

        asyncio.run(reachable())
    app = create_app(settings=service_settings, model_settings=settings, pipelines=specs)
    print(f"page and API at http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    serve(app, host=args.host, port=args.port, settings=service_settings)
    return 0


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
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while modules are still importing
        return 130


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from lc_async_pipelines.errors import (
        BudgetUnavailable,
        CacheUnavailable,
        ConfigurationError,
        EmbeddedModelError,
        InputError,
        WorkersLost,
    )

    try:
        if args.command == "run" and args.concurrency is None:
            args.concurrency = 10_000 if args.batch_api else 4
        if args.command == "run" and args.dry_run:
            return _dry_run(args)
        if args.command == "run":
            plan = _plan(args)  # every check before any import of the model stack
            import asyncio

            with plan.run:
                return asyncio.run(_run(args, plan))
        if args.command == "news":
            return _news(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "list":
            return _list()
        if args.command == "serve-model":
            return _serve_model(args)
        return _build_server()
    except (
        _UsageError,
        ConfigurationError,
        InputError,
        EmbeddedModelError,
        BudgetUnavailable,
        CacheUnavailable,
        WorkersLost,
    ) as exc:
        from lc_async_pipelines._scrub import error_text

        print(f"pipelines: error: {error_text(exc)}", file=sys.stderr)
        return 2
