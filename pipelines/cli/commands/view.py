"""``pipelines view``: a live page of a run, from its records, summary and manifest.

The page follows the records as the run appends them, and opens a finished
or killed run the same way. It reads the run's files and writes none.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lc_async_pipelines.cli._args import number
from lc_async_pipelines.cli._checks import fail_usage
from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["add_parser", "execute"]

_EXAMPLES = """\
examples:
  pipelines view out/stories.jsonl
  pipelines view out/reviews.csv --port 0
  PIPELINES_API_TOKEN=... pipelines view out/news.jsonl --host 0.0.0.0

OUTPUT is a run's --output: its records file, or its table (whose records are
kept beside it as TABLE.records.jsonl), while the run writes it or after.
Without PIPELINES_API_TOKEN only this machine is served (as pipelines serve).
"""

_SIDECARS = (".records.jsonl", ".manifest.json", ".summary.json", ".batches.json", ".lock")


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``view`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "view",
        help="watch a run on a local page: progress, rate, cost, failures, records",
        description="Serve a live page of a run: progress and ETA, rate against the budget, "
        "cost, latency and TTFT, 429s and retries, failures by class, and its records "
        "(searchable, paginated). Needs the service extra.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=execute)
    parser.add_argument("output", metavar="OUTPUT", type=Path, help="a run's --output")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=number(int, 0, strict=False, maximum=65_535),
        default=8001,
        help="port (default 8001; 0: a free one)",
    )


def execute(args: argparse.Namespace) -> ExitCode:
    """Check OUTPUT, bind the port, then serve the page until interrupted; exit 2 on bad input."""
    check_output(args.output)
    try:
        from lc_async_pipelines.service import ServiceSettings, bind, serve
        from lc_async_pipelines.view import create_view_app
    except ImportError as exc:
        fail_usage(
            f"pipelines view needs the service extra ({exc.name} is missing): "
            "pip install 'lc-async-pipelines[service]'"
        )
    settings = ServiceSettings.from_env()
    sock = bind(args.host, args.port, settings=settings)  # in use: one line, exit 2
    port = sock.getsockname()[1]
    app = create_view_app(args.output, settings=settings)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"view of {args.output} at http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    serve(app, host=args.host, port=port, settings=settings, sock=sock)
    return ExitCode.OK


def check_output(given: Path) -> None:
    """OUTPUT names a run: its records file exists and begins with a record (else exit 2).

    An empty records file (a run that has written nothing yet) is a run.
    """
    from lc_async_pipelines.runner.records import records_path

    if given.is_dir():
        fail_usage(f"{given}: is a folder; give a run's --output file")
    records = records_path(given)
    if not records.exists():
        fail_usage(f"{given}: no such run (no {records.name}){_closest_run(given)}")
    if not records.is_file():
        fail_usage(f"{records}: not a regular file (a device, a pipe or a socket)")
    with records.open("rb") as fh:
        first = fh.readline(1 << 20)
    problem = _not_a_record(first)
    if problem is not None:
        fail_usage(f"{records}: line 1 is not a record ({problem}); give a run's --output")


def _not_a_record(first: bytes) -> str | None:
    """Why the first line is not a record; None when it is one, or one being written."""
    from lc_async_pipelines.runner.records.scan import parse_line

    if not first or (not first.endswith(b"\n") and first.startswith(b"{")):
        return None
    _, problem = parse_line(first)
    return problem


def _closest_run(given: Path) -> str:
    """`` (did you mean 'out/x.jsonl'?)`` for the run beside ``given`` closest by name, or ""."""
    import difflib

    folder = given.parent
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return ""
    runs = sorted({_run_name(n) for n in names if n.endswith((".jsonl", ".manifest.json"))})
    close = difflib.get_close_matches(given.name, runs, n=1)  # as _text.did_you_mean
    return f" (did you mean {str(folder / close[0])!r}?)" if close else ""


def _run_name(name: str) -> str:
    """The run's --output a file belongs to: ``x.csv`` for ``x.csv.records.jsonl``."""
    for suffix in _SIDECARS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
