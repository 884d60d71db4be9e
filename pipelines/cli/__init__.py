"""The ``pipelines`` command line: run any pipeline over a file, serve pipelines, serve the model.

Only the standard library is imported until the arguments are parsed and
checked, so ``--help``, ``--version`` and argument errors answer at once
(``benchmarks/cli_startup.py`` measures it).

The package, by idea:

- this module: the parser and the dispatch (:func:`main`, :func:`build_parser`);
- :mod:`.exit_codes`: the exit codes, the one place they are listed;
- ``_args``: the parser class, number types and flag groups commands share;
- ``_checks``: the usage error and the checks commands share (paths, URLs, model);
- ``_shared_limits``: the rate budget and the shared Redis (--budget, --cache);
- ``_signals``: SIGINT and SIGTERM, the same for every command;
- ``commands/``: one module per command (``run``, ``invoke``, ``export``, ``view``, ``news``,
  ``serve`` with ``serve-model``, ``list``, ``build-server``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from lc_async_pipelines._version import __version__
from lc_async_pipelines.cli._args import OneLineErrorParser
from lc_async_pipelines.cli._checks import UsageError
from lc_async_pipelines.cli.commands import (
    build_server,
    export,
    install_model,
    invoke,
    news,
    run,
    serve,
    view,
)
from lc_async_pipelines.cli.commands import list as list_command
from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["ExitCode", "build_parser", "main"]

_MAIN_EXAMPLES = """\
examples:
  pipelines run story --input topics.txt --output out/stories.jsonl
  pipelines run --prompt prompt.txt --input rows.csv --output out/o.jsonl
  pipelines invoke story "a lighthouse keeper's last night" --stream
  pipelines view out/stories.jsonl
  pipelines serve --port 8000
  pipelines list

With no OPENAI_API_KEY, OPENAI_BASE_URL or provider:model set, the embedded
model (SmolLM2-135M on llama.cpp's llama-server) runs on this machine.
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pipelines`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = OneLineErrorParser(
        prog="pipelines",
        description="LangChain async pipelines: run any chain over a file of items, "
        "or serve pipelines over HTTP.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # type: ignore[attr-defined]  # for the did-you-mean of _parse
    for add_parser in (  # the order of `pipelines --help`
        run.add_parser,
        invoke.add_parser,
        export.add_parser,
        view.add_parser,
        news.add_parser,
        serve.add_parser,
        list_command.add_parser,
        serve.add_model_parser,
        install_model.add_parser,
        build_server.add_parser,
    ):
        add_parser(sub, formatter)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a mistyped command or flag is one line with the closest name.

    An unknown flag is reported by its command's parser, so the pointer is to
    that command's ``--help`` (argparse reports it from the top-level one).
    """
    from lc_async_pipelines._text import did_you_mean

    commands: dict[str, argparse.ArgumentParser] = parser.commands  # type: ignore[attr-defined]
    given = next((a for a in argv if not a.startswith("-")), None)
    if given is not None and given not in commands:
        parser.error(
            f"no command {given!r}{did_you_mean(given, commands)}; commands: " + ", ".join(commands)
        )
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = commands[args.command]
        flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", command.format_usage())
        first = next((u.split("=")[0] for u in unknown if u.startswith("-")), "")
        hint = did_you_mean(first, flags) if first else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    The codes and what each means: :mod:`lc_async_pipelines.cli.exit_codes`.
    """
    try:
        return _parse_and_execute(argv)
    except KeyboardInterrupt:  # also while modules are still importing
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `pipelines list | head`: the reader left; say nothing more
        # Python's recipe (docs.python.org/3/library/signal.html#note-on-sigpipe):
        # stdout to devnull, so the flush at exit does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


def _parse_and_execute(argv: list[str] | None) -> ExitCode:
    """Parse ``argv`` and run its command; the library's usage errors become exit 2."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = _parse(build_parser(), given)
    args.argv = given  # for the resume command
    from lc_async_pipelines.errors import (
        BudgetUnavailable,
        CacheUnavailable,
        ConfigurationError,
        EmbeddedModelError,
        InputError,
        OutputWriteError,
        WorkersLost,
    )

    execute: Callable[[argparse.Namespace], ExitCode] = args.execute
    try:
        if getattr(args, "trace", None):
            from lc_async_pipelines.cli._checks import check_collector
            from lc_async_pipelines.telemetry import configure_telemetry

            check_collector(args.trace)
            configure_telemetry(args.trace)
        return execute(args)
    except UsageError as exc:
        from lc_async_pipelines._scrub import error_text

        command = f"pipelines {args.command}"
        print(f"{command}: error: {error_text(exc)} (see {command} --help)", file=sys.stderr)
        return ExitCode.USAGE
    except (
        ConfigurationError,
        InputError,
        EmbeddedModelError,
        BudgetUnavailable,
        CacheUnavailable,
        WorkersLost,
    ) as exc:
        from lc_async_pipelines._scrub import error_text

        print(f"pipelines: error: {error_text(exc)}", file=sys.stderr)
        return ExitCode.USAGE
    except OutputWriteError as exc:  # a full disk: stopped, what was written kept
        from lc_async_pipelines._scrub import error_text

        print(
            f"pipelines: error: {error_text(exc)}; stopped, the records written are kept: "
            "make room and run the same command again to resume",
            file=sys.stderr,
        )
        return ExitCode.WRITE_FAILED
    finally:
        _flush_telemetry()


def _flush_telemetry() -> None:
    """Send the spans and metrics still buffered, if telemetry was switched on."""
    telemetry = sys.modules.get("lc_async_pipelines.telemetry")
    if telemetry is not None and telemetry.current() is not None:
        telemetry.shutdown_telemetry()
