"""``pipelines invoke``: one input through any pipeline, its output on stdout (as ``llm "prompt"``).

The same targets and model choice as ``pipelines run`` (a registered name,
``module:attr``, or ``--prompt FILE`` with ``-v name=value`` variables), for one
input given as an argument or on stdin. ``--stream`` writes the output as the
chain yields it (its finished text: what ``--json`` and ``ainvoke`` return);
``--json`` prints the output with its usage, cost and times instead.
Exit: 0 done, 1 the call failed, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._args import MAX_WORDS, add_model_flags, count, number
from lc_async_pipelines.cli._checks import chain_input_shape, check_regular_file, fail_usage
from lc_async_pipelines.cli.exit_codes import ExitCode
from lc_async_pipelines.kinds import KINDS

if TYPE_CHECKING:
    from lc_async_pipelines.registry import PipelineSpec

__all__ = ["add_parser", "execute"]

_EXAMPLES = """\
examples:
  pipelines invoke story "a lighthouse keeper's last night" --stream
  cat article.txt | pipelines invoke summary - --max-words 60
  pipelines invoke --prompt review.txt -v product=kettle -v stars=2 --json
  pipelines invoke my_app.chains:build_chain "some input" -m openai:gpt-4o-mini

INPUT is the text the pipeline takes; - (or nothing, when stdin is piped) reads
it from stdin. A --prompt file's variables come from -v NAME=VALUE, and INPUT
fills the one left, if one is. Exit: 0 done, 1 the call failed, 2 bad arguments.
"""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``invoke`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "invoke",
        help="run one input through a pipeline and print its output",
        description="Run one input through a pipeline (or a --prompt file) on the "
        "configured model and print the output.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=execute, cache=None, fallback_model=None)
    parser.add_argument("target", nargs="?", metavar="TARGET", help="pipeline name or module:attr")
    parser.add_argument("input", nargs="?", metavar="INPUT", help="the input; - reads stdin")
    parser.add_argument("--prompt", type=Path, help="prompt template file instead of TARGET")
    parser.add_argument("--schema", help="with --prompt: structured output (JSON Schema file)")
    parser.add_argument(
        "-v",
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a --prompt variable (repeatable)",
    )
    parser.add_argument("--stream", action="store_true", help="write the output as it comes")
    parser.add_argument(
        "--json", action="store_true", help="print output, usage, cost and times as JSON"
    )
    parser.add_argument(
        "--max-words",
        type=number(int, 0, strict=True, maximum=MAX_WORDS),
        help=f"target output length in words (1 to {MAX_WORDS:,})",
    )
    parser.add_argument(
        "--kind", choices=KINDS, help="summary: what the document is (default auto: guessed)"
    )
    parser.add_argument("--outline", action="store_true", help="story: outline first, then story")
    parser.add_argument(
        "--candidates",
        type=number(int, 0, strict=True),
        help="summary: summaries written per short document, the best kept "
        "(faithful to the document, agreeing with the others); one model call each; default 1, "
        "at most 8",
    )
    parser.add_argument(
        "--max-chunks",
        type=number(int, 0, strict=True),
        help="summary: most chunks (one model call each) the document may split into (default 64)",
    )
    parser.add_argument(
        "--max-retries", type=count, default=3, help="retries of the model call (default 3)"
    )
    add_model_flags(parser)


def execute(args: argparse.Namespace) -> ExitCode:
    """Run ``pipelines invoke``: check, read the input, call, print."""
    if args.prompt is not None and args.target is not None and args.input is None:
        args.target, args.input = None, args.target  # `invoke --prompt FILE "text"`
    _check_prompt_file(args)
    from lc_async_pipelines.cli.commands._run_plan import pipeline_from_args

    spec, options = pipeline_from_args(args)
    value = _input_value(args, spec, options)
    import asyncio

    from lc_async_pipelines.cli.commands._invoke_call import call_once

    return asyncio.run(call_once(args, spec, options, value))


def _check_prompt_file(args: argparse.Namespace) -> None:
    """--prompt and --schema name files that exist (before LangChain loads)."""
    for flag, path in (("--prompt", args.prompt), ("--schema", args.schema)):
        if path is None or (flag == "--schema" and ":" in str(path) and not Path(path).exists()):
            continue
        check_regular_file(flag, Path(path))
    if args.var and args.prompt is None:
        fail_usage("-v/--var goes with --prompt FILE (the prompt's variables)")


def _input_value(args: argparse.Namespace, spec: PipelineSpec, options: dict[str, Any]) -> Any:
    """The chain's input: INPUT or stdin as text, or a row of -v variables (+ INPUT)."""
    whole_rows, required, _ = chain_input_shape(spec, options)
    if not whole_rows:
        return _input_text(args, needed=True)
    variables = dict(_variable(v) for v in args.var)
    missing = [r for r in required if r not in variables]
    text = _input_text(args, needed=False) if len(missing) <= 1 else args.input
    if text is not None and len(missing) == 1:
        variables[missing.pop()] = text
    elif text is not None and not missing:
        fail_usage("INPUT: every variable of the prompt is given by -v; drop INPUT or a -v")
    if missing:
        flags = " ".join(f"-v {m}=..." for m in missing)
        left = "" if text is not None or len(missing) > 1 else " (or INPUT)"
        fail_usage(f"the prompt needs {', '.join(map(repr, missing))}: give {flags}{left}")
    return variables


def _variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        fail_usage(f"-v {text}: expected NAME=VALUE")
    return name, value


def _input_text(args: argparse.Namespace, *, needed: bool) -> str | None:
    """INPUT, or stdin for ``-`` (or for nothing, when stdin is not a terminal).

    None when nothing was given and nothing is ``needed`` (a prompt's row
    may come from ``-v`` alone).
    """
    if args.input is not None and args.input != "-":
        return str(args.input)
    if args.input is None and sys.stdin.isatty():
        if needed:
            fail_usage("give INPUT, or - to read it from stdin")
        return None
    text = sys.stdin.read()
    if not text.strip():
        if needed or args.input == "-":
            fail_usage("INPUT: stdin was empty")
        return None
    return text.rstrip("\n")
