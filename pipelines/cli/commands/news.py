"""``pipelines news``: fetch news feeds and analyse every article, each shown as it completes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._args import (
    add_model_flags,
    add_shared_flags,
    add_trace_flag,
    count,
    number,
    positive_float,
    positive_int,
)
from lc_async_pipelines.cli._checks import check_paths, fail_usage, model_identity
from lc_async_pipelines.cli._shared_limits import (
    check_shared_services_reachable,
    open_rate_budget,
)
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.news import Extractor, Fetcher, FetchLimits
    from lc_async_pipelines.runner import Record, RunOptions, RunSummary
    from lc_async_pipelines.runner.records import RunFile

__all__ = ["add_parser", "analyse_feeds", "execute", "news_line"]

_EXAMPLES = """\
examples:
  pipelines news --sources feeds.txt --output out/news.jsonl --deadline 600
  pipelines news --sources feeds.txt -m openai:gpt-4o-mini --tools agent --rpm 500

SOURCES holds one feed URL a line (RSS, Atom or JSON Feed; # starts a comment).
Every feed is fetched at once; each article is fetched, read and analysed, and
its record is written and shown as it completes. A feed or article that fails
becomes one error record naming its URL and the cause. Running the same command
again resumes. Exit: 0 all done, 1 some failed or the deadline passed, 2 bad
arguments, 4 the output could not be written (a full disk), 130/143 stopped.
"""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``news`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "news",
        help="fetch news feeds and analyse every article, shown as each completes",
        description="Fetch news feeds concurrently and analyse every article with the "
        "model (summary, topic, tone, key facts, names): one JSON record per article.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=execute)
    _add_io_flags(parser)
    _add_analysis_flags(parser)
    _add_fetch_flags(parser)
    _add_limit_flags(parser)
    add_model_flags(parser)
    add_trace_flag(parser)


def _add_io_flags(parser: argparse.ArgumentParser) -> None:
    """The "input and output" group."""
    io = parser.add_argument_group("input and output")
    io.add_argument("--sources", required=True, type=Path, help="feed URLs, one a line")
    io.add_argument(
        "--output", type=Path, default=Path("out/news.jsonl"), help="records (out/news.jsonl)"
    )
    io.add_argument("--restart", action="store_true", help="start over instead of resuming")
    io.add_argument("--limit", type=count, help="analyse at most N articles")
    io.add_argument("--per-source", type=positive_int, help="at most N articles from each feed")
    io.add_argument("--quiet", action="store_true", help="no line per article")
    io.add_argument(
        "--json", action="store_true", help="print the run's full summary as JSON on stdout"
    )


def _add_analysis_flags(parser: argparse.ArgumentParser) -> None:
    """The "analysis" group: --max-words and --tools."""
    task = parser.add_argument_group("analysis")
    task.add_argument(
        "--max-words",
        # a summary has at least 10 words (NewsAnalysis), so no shorter length is asked
        type=number(int, 10, strict=False, maximum=2000),
        default=40,
        help="summary length in words, 10 to 2000 (default 40)",
    )
    task.add_argument(
        "--tools",
        choices=("auto", "fixed", "agent"),
        default="auto",
        help="agent: a tool-calling model calls the tools; fixed: the tools run as fixed "
        "steps (auto: fixed on the embedded model, agent otherwise)",
    )


def _add_fetch_flags(parser: argparse.ArgumentParser) -> None:
    """The "fetching" group."""
    fetch = parser.add_argument_group("fetching")
    fetch.add_argument(
        "--deadline", type=positive_float, help="overall deadline, seconds; the rest resumes"
    )
    fetch.add_argument(
        "--per-host", type=positive_int, default=4, help="requests in flight per host (4)"
    )
    fetch.add_argument(
        "--fetch-timeout",
        type=positive_float,
        default=15.0,
        help="read timeout, and the most one page may take to read, seconds (15)",
    )
    fetch.add_argument(
        "--max-bytes", type=positive_int, default=5_000_000, help="size cap per page (5 MB)"
    )
    fetch.add_argument(
        "--allow-private-addresses",
        action="store_true",
        help="let feeds' links and redirects reach loopback and private addresses "
        "(off: only the sources file's own hosts may)",
    )


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The "concurrency, budget and retries" group."""
    limits = parser.add_argument_group("concurrency, budget and retries")
    limits.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        help="model calls at once (default 4); pages are fetched 4 times as far ahead",
    )
    limits.add_argument(
        "--max-retries", type=count, default=3, help="retries of each model call (3)"
    )
    limits.add_argument("--rpm", type=positive_float, help="requests per minute")
    limits.add_argument("--tpm", type=positive_float, help="tokens per minute")
    limits.add_argument("--item-timeout", type=positive_float, help="deadline per article, seconds")
    add_shared_flags(limits)


def execute(args: argparse.Namespace) -> ExitCode:
    """Run ``pipelines news``: checks first, then the analysis (:func:`analyse_feeds`)."""
    args.input = args.sources
    check_paths(args, "--sources", "a text file of feed URLs (one a line)")
    from lc_async_pipelines.news import read_sources
    from lc_async_pipelines.registry import load_pipeline

    sources = read_sources(args.sources)
    spec = load_pipeline("news")
    from lc_async_pipelines.models import ModelSettings

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    model = model_identity(args, spec, settings)
    tools = _tool_mode(args, settings)
    run = _open_news_output(args, model, settings, tools)
    import asyncio

    with run:
        return asyncio.run(analyse_feeds(args, run, sources, settings, tools))


def _tool_mode(args: argparse.Namespace, settings: ModelSettings) -> str:
    """--tools: "auto" made "fixed" on the embedded model (it cannot call tools), else "agent"."""
    tools: str = args.tools
    if tools == "auto":
        return "fixed" if settings.uses_embedded else "agent"
    if tools == "agent" and settings.uses_embedded:
        fail_usage("--tools agent: the embedded model cannot call tools; use --tools fixed")
    return tools


def _open_news_output(
    args: argparse.Namespace, model: str, settings: ModelSettings, tools: str
) -> RunFile:
    """Open --output for this analysis (resume or --restart); the caller's `with` unlocks it."""
    from lc_async_pipelines.runner.records import RunManifest, chain_fingerprint, open_run

    options = {"max_words": args.max_words, "tools": tools, "per_source": args.per_source}
    manifest = RunManifest.new(
        pipeline="news",
        fingerprint=chain_fingerprint({"target": "news --sources", "options": options}),
        model=model,
        input=args.sources,
        options=options,
    )
    check_shared_services_reachable(args, settings)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        return open_run(args.output, manifest, restart=args.restart)
    except OSError as exc:
        fail_usage(f"--output {args.output}: cannot be written ({exc.strerror})")


def news_line(record: Any) -> str:
    """One line per finished article: tone, topic and title, or the error."""
    seconds = f"{record.latency_s:5.1f} s"
    if not record.ok:
        error = record.error or {}
        return f"✗ {seconds}  {record.input}  {error.get('type')}: {error.get('message')}"[:300]
    out = record.output if isinstance(record.output, dict) else record.output.model_dump()
    analysis = out.get("analysis", {})
    title = out.get("title") or out.get("url")
    return f"✓ {seconds}  {analysis.get('tone', ''):8} {analysis.get('topic', '')[:24]:24} {title}"


async def analyse_feeds(
    args: argparse.Namespace, run: RunFile, sources: list[str], settings: Any, tools: str
) -> ExitCode:
    """Fetch the feeds and analyse their articles, writing a record as each completes."""
    import asyncio

    from lc_async_pipelines.cli._signals import stop_loop_on_signals
    from lc_async_pipelines.news import Extractor, Fetcher, analyse_news
    from lc_async_pipelines.runner import RetryPolicy
    from lc_async_pipelines.session import model_session

    done = set(run.done_ids)
    if done:
        print(f"resuming: {len(done)} records already done in {args.output}", file=sys.stderr)
    stop = asyncio.Event()
    signals = stop_loop_on_signals(stop, grace_s=0.0)
    retry = RetryPolicy(max_retries=args.max_retries)
    # Pages are fetched ahead of the model: 4 articles in flight per model
    # call, so a broken link fails at once instead of waiting for a model slot.
    budget = open_rate_budget(args, settings, args.concurrency)
    options = _news_run_options(args, retry, done, stop, run.manifest.trace_attributes())
    limits = _fetch_limits(args)
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
        # pages are read in worker processes, each killed past --fetch-timeout
        Extractor.for_pages(limits) as extractor,
    ):
        print(f"pipelines: news ({tools} tools) on {session.description}", file=sys.stderr)
        chain = _build_news_chain(session.llm, fetcher, extractor, tools, args.max_words)
        records = analyse_news(sources, chain, fetcher, options, deadline_s=args.deadline)
        try:
            summary = await _write_news_records(args, records, run)
        except asyncio.CancelledError:  # a second signal: stop now
            return signals.exit_code or ExitCode.INTERRUPTED
        extra = {"requests_sent": budget.requests_sent, "sources": len(sources)}
    _print_totals(args, run, summary, extra, stopped=signals.exit_code is not None)
    if signals.exit_code is not None:
        return signals.exit_code
    return ExitCode.for_items(summary.failed)


def _print_totals(
    args: argparse.Namespace,
    run: RunFile,
    summary: RunSummary,
    extra: dict[str, Any],
    *,
    stopped: bool,
) -> None:
    """Finish the run file; the ending table on stderr, and the summary on stdout with --json."""
    import json

    from lc_async_pipelines.cli._ending import Ending, ending_rows, print_ending
    from lc_async_pipelines.runner.records import summary_path

    totals = run.finish(summary, extra)
    ending = Ending(
        records=str(args.output),
        summary_file=str(summary_path(args.output)),  # as the user spelled --output
        argv=getattr(args, "argv", ()),
        stopped="signal" if stopped else None,
        rpm=args.rpm,
        tpm=args.tpm,
    )
    print_ending("pipelines: news", ending_rows(totals, ending), ending.argv)
    if args.json:
        print(json.dumps({"summary": totals}), flush=True)


def _news_run_options(
    args: argparse.Namespace,
    retry: Any,
    done: set[str],
    stop: asyncio.Event,
    trace_attributes: dict[str, Any],
) -> RunOptions:
    """The runner's options: 4 articles in flight per model call; no grace after a stop."""
    from lc_async_pipelines.runner import RunOptions

    return RunOptions(
        concurrency=args.concurrency * 4,
        retry=retry,
        limit=args.limit,
        skip=frozenset(done),
        stop=stop,
        grace_s=0.0,
        item_timeout_s=args.item_timeout,
        trace_attributes=trace_attributes,
    )


def _fetch_limits(args: argparse.Namespace) -> FetchLimits:
    """The fetcher's limits from the "fetching" flags and --per-source."""
    from lc_async_pipelines.news import FetchLimits

    return FetchLimits(
        per_host=args.per_host,
        read_timeout_s=args.fetch_timeout,
        max_bytes=args.max_bytes,
        max_articles_per_source=args.per_source,
        allow_private_addresses=args.allow_private_addresses,
    )


def _build_news_chain(
    llm: Any, fetcher: Fetcher, extractor: Extractor, tools: str, max_words: int
) -> Any:
    """The analysis chain: a tool-calling agent, or the tools as fixed steps."""
    from lc_async_pipelines.news import build_news_agent, build_news_tool_chain, news_tools

    toolset = news_tools(fetcher, extractor=extractor)
    build = build_news_agent if tools == "agent" else build_news_tool_chain
    return build(llm, toolset, max_words=max_words)


async def _write_news_records(
    args: argparse.Namespace, records: AsyncIterator[Record], run: RunFile
) -> RunSummary:
    """Write each record, with a line per article (unless --quiet) and the progress bar."""
    from lc_async_pipelines.cli._display import run_display
    from lc_async_pipelines.runner import write_records

    with run_display(None, stream=False, tagged=False) as display:

        def show(record: Any) -> None:
            if not args.quiet:
                display.line(news_line(record))  # above the bar on a terminal
            display.show(record)

        return await write_records(records, run.out, on_record=show)
