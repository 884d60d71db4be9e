"""``pipelines run``: run a pipeline over a file of items, one JSON record per item.

The command's flags, and its two paths: ``--dry-run`` (every prompt rendered,
no model called: :mod:`._dry_run`) and the run itself, checked and opened
first (:mod:`._run_plan`), then written (:mod:`._run_records`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lc_async_pipelines.cli._args import (
    MAX_WORDS,
    add_model_flags,
    add_shared_flags,
    add_trace_flag,
    count,
    number,
    positive_float,
    positive_int,
    seconds,
)
from lc_async_pipelines.cli._checks import fail_usage
from lc_async_pipelines.cli._lanes_args import deadline, lane_list, lanes_flags_problem
from lc_async_pipelines.cli.commands._flex_lane import add_lane_flags
from lc_async_pipelines.cli.exit_codes import ExitCode
from lc_async_pipelines.kinds import KINDS

__all__ = ["add_parser", "execute"]

_EXAMPLES = """\
examples:
  pipelines run story --input topics.txt --output out/stories.jsonl --stream
  pipelines run summary --input news.json --field article --id-field article_id \\
      --limit 20 --concurrency 4 --output out/news.jsonl
  pipelines run summary --kind auto --input chats.jsonl --output out/chats.jsonl
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
--max-cost (run again with a higher cap), 4 the output could not be written (a
full disk: make room, run again), 130/143 stopped.

Batch API and costs:
  pipelines run summary --input docs.jsonl --output out/s.jsonl --dry-run -m gpt-4o-mini
  pipelines run summary --input docs.jsonl --output out/s.jsonl --batch-api --max-cost 5
  pipelines run summary --input docs.jsonl --output out/s.jsonl \\
      --lanes batch,flex,standard --deadline 6h --max-cost 20 [--dry-run]
  pipelines run summary --input docs.jsonl --output out/s.jsonl -m gpt-5-mini \\
      --lane flex --flex-wait 900
"""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``run`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "run",
        help="run a pipeline over a file of items, one record per item",
        description="Run a pipeline over a file of items: one JSON record per item, "
        "resumable, within a shared rate budget.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=execute)
    _add_target_flags(parser)
    _add_io_flags(parser)
    _add_pipeline_option_flags(parser)
    _add_limit_flags(parser)
    _add_cost_flags(parser)
    _add_engine_flags(parser)
    add_model_flags(parser)
    add_trace_flag(parser)


def execute(args: argparse.Namespace) -> ExitCode:
    """Run ``pipelines run``: the estimate of --dry-run, or the checks and then the run."""
    if args.concurrency is None:
        args.concurrency = 10_000 if args.batch_api else 4
    lane_problem = lanes_flags_problem(args)
    if lane_problem:
        fail_usage(lane_problem)
    if args.dry_run and args.lanes:
        from lc_async_pipelines.cli.commands._run_lanes import print_lanes_plan

        return print_lanes_plan(args)
    if args.dry_run:
        from lc_async_pipelines.cli.commands._dry_run import print_dry_run_estimate

        return print_dry_run_estimate(args)
    from lc_async_pipelines.cli.commands._run_plan import prepare_run
    from lc_async_pipelines.cli.commands._run_records import write_run_records

    plan = prepare_run(args)  # every check before any import of the model stack
    import asyncio

    with plan.run:
        return asyncio.run(write_run_records(args, plan))


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
    """TARGET, --prompt and --schema: what runs."""
    parser.add_argument("target", nargs="?", metavar="TARGET", help="pipeline name or module:attr")
    parser.add_argument("--prompt", type=Path, help="prompt template file instead of TARGET")
    parser.add_argument(
        "--schema",
        help="with --prompt: structured output, a JSON Schema file or module:PydanticModel",
    )


def _add_io_flags(parser: argparse.ArgumentParser) -> None:
    """The "input and output" group."""
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", required=True, type=Path, help=".jsonl, .json, .csv or .txt")
    io.add_argument("--output", required=True, type=Path, help="records, one JSON per line")
    io.add_argument("--field", help="text field of object rows (default: input/text/topic/...)")
    io.add_argument(
        "--id-field",
        help="row field holding a stable id (default: id when rows have one, else a hash "
        "of the input); checked against the first row",
    )
    io.add_argument("--limit", type=count, help="run at most N distinct items")
    io.add_argument(
        "--restart", action="store_true", help="start over instead of resuming from OUTPUT"
    )
    io.add_argument(
        "--stream",
        action="store_true",
        help="show each item's text: on a terminal as its tokens arrive, above the bar; "
        "piped, each output as its record is written",
    )
    io.add_argument(
        "--json", action="store_true", help="print the run's full summary as JSON on stdout"
    )


def _add_pipeline_option_flags(parser: argparse.ArgumentParser) -> None:
    """The "pipeline options" group: --max-words, --kind, --outline, --candidates, --max-chunks."""
    opts = parser.add_argument_group("pipeline options")
    opts.add_argument(
        "--max-words",
        type=number(int, 0, strict=True, maximum=MAX_WORDS),
        help=f"target output length in words; summaries: within ±30%%, never over 1.3x "
        f"(1 to {MAX_WORDS:,})",
    )
    opts.add_argument(
        "--kind",
        choices=KINDS,
        help="summary: what the documents are, for the prompts' wording; auto (default) "
        "guesses each from its text and notes the guess in its record",
    )
    opts.add_argument("--outline", action="store_true", help="story: outline first, then story")
    opts.add_argument(
        "--candidates",
        type=number(int, 0, strict=True),
        help="summary: summaries written per short document, the best kept "
        "(faithful to the document, agreeing with the others); one model call each; default 1, "
        "at most 8",
    )
    opts.add_argument(
        "--max-chunks",
        type=number(int, 0, strict=True),
        help="summary: most chunks (one model call each) a document may split into; "
        "one with more is an error record (default 64)",
    )


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The "concurrency, budget and retries" group."""
    limits = parser.add_argument_group("concurrency, budget and retries")
    limits.add_argument(
        "--concurrency",
        type=positive_int,
        help="items in flight (default 4; 10,000 with --batch-api, so a stage fills a batch)",
    )
    limits.add_argument(
        "--max-retries",
        type=count,
        default=3,
        help="retries of each model call, and of an item whose output fails its schema (default 3)",
    )
    limits.add_argument("--rpm", type=positive_float, help="requests per minute, whole run")
    limits.add_argument("--tpm", type=positive_float, help="tokens per minute, whole run")
    limits.add_argument(
        "--max-in-flight",
        type=positive_int,
        help="model calls in flight across the run, nested ones included (default: --concurrency)",
    )
    limits.add_argument(
        "--item-timeout", type=positive_float, help="deadline per item, seconds, retries included"
    )
    limits.add_argument(
        "--max-input-tokens",
        type=positive_int,
        help="inputs estimated larger become error records without a call (default: the "
        "model's context window, PIPELINES_CONTEXT_TOKENS; 4096 for the embedded model)",
    )
    limits.add_argument(
        "--grace",
        type=seconds,
        default=30.0,
        help="seconds in-flight items get after SIGINT/SIGTERM (default 30)",
    )
    add_shared_flags(limits)
    limits.add_argument("--fallback-model", help="model tried when a call to the main one fails")


def _add_cost_flags(parser: argparse.ArgumentParser) -> None:
    """The "Batch API and costs" group."""
    costs = parser.add_argument_group("Batch API and costs")
    costs.add_argument(
        "--batch-api",
        action="store_true",
        help="send the model calls through the provider's batch API (OpenAI /v1/batches, "
        "Anthropic /v1/messages/batches): about half the price, results within 24 h; resumable",
    )
    costs.add_argument(
        "--batch-retry",
        choices=("batch", "request"),
        default="batch",
        help="failed batch lines: retry in the next batch (default) or as single requests",
    )
    costs.add_argument(
        "--batch-window",
        type=positive_float,
        default=600.0,
        help="longest a stage waits for more calls before it is sent, seconds (default 600)",
    )
    costs.add_argument(
        "--max-enqueued-tokens",
        type=positive_int,
        help="your tier's Batch API enqueued-token limit per model",
    )
    costs.add_argument(
        "--lanes",
        type=lane_list,
        metavar="LANES",
        help="lanes items may take, e.g. batch,flex,standard: each item goes to the cheapest "
        "lane expected to finish it by --deadline, and moves to a faster one when that "
        "lane falls behind (docs/lanes.md)",
    )
    costs.add_argument(
        "--deadline",
        type=deadline,
        metavar="WHEN",
        help="with --lanes: when every item should be done: a duration from now (90s, 30m, "
        "6h, 1d) or an ISO time (2026-12-07T09:00)",
    )
    costs.add_argument(
        "--prices", type=Path, help="price table JSON over the shipped one (USD per 1M tokens)"
    )
    costs.add_argument(
        "--max-cost",
        type=number(float, 0, strict=False),
        metavar="USD",
        help="cap for the whole run: no new item once spent + in-flight estimate would pass "
        "it (exit 3; run again with a higher cap to go on)",
    )
    costs.add_argument(
        "--dry-run",
        action="store_true",
        help="render every prompt; print estimated tokens, cost and wall time; call no model",
    )
    add_lane_flags(costs)


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """The "engine" group: --engine, --workers and --address."""
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: Ray actors, each with its own "
        "--concurrency window, this process the only writer",
    )
    engine.add_argument(
        "--workers", type=positive_int, help="--engine ray: worker actors (default 2)"
    )
    engine.add_argument(
        "--address", help="--engine ray: a running Ray cluster (default: start one here)"
    )
