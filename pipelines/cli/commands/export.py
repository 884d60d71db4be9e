"""``pipelines export``: a run's records as a CSV or Parquet table.

The records are read as they are (each item once, in input order); the
input's own columns come from the run's input file, named in the manifest
beside the records (or ``--input``). A run still writing them is not waited
for: the table holds the records written so far, and a note says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lc_async_pipelines.cli._checks import fail_usage
from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["add_parser", "execute"]

_TABLES = (".csv", ".parquet")

_EXAMPLES = """\
examples:
  pipelines export out/stories.jsonl --to out/stories.csv
  pipelines export out/news.jsonl --to out/news.parquet --force
  pipelines export out/reviews.csv --to out/reviews.parquet

RECORDS is a run's --output: its records file, or its table (whose records are
kept beside it as TABLE.records.jsonl). Columns: id, the input's own columns,
output (structured output: one output.FIELD column per field), error,
error_class, attempts, cost_usd, latency_s, ttft_s, queued_s and tokens.
"""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``export`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "export",
        help="write a run's records as a CSV or Parquet table",
        description="Write a run's records as a table: one row per item, in input order.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=execute)
    parser.add_argument("records", metavar="RECORDS", type=Path, help="a run's --output")
    parser.add_argument(
        "--to", required=True, type=Path, metavar="FILE", help="the table: FILE.csv or FILE.parquet"
    )
    parser.add_argument(
        "--input",
        type=Path,
        help="the run's input file, for its columns (default: the one the run read)",
    )
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")


def execute(args: argparse.Namespace) -> ExitCode:
    """Check the paths, then write the table; exit 2 on a wrong path, changing nothing."""
    output, records = _records_of(args.records)
    input_path = _input_of(args, output)
    _check_destination(args, records, input_path)
    from lc_async_pipelines.runner.records import PARQUET_HINT, lock_holder, lock_path, write_table
    from lc_async_pipelines.runner.records.scan import parse_line

    with records.open("rb") as fh:
        _, problem = parse_line(fh.readline())
    if problem is not None and problem != "blank":
        fail_usage(f"{args.records}: line 1 is not a record ({problem}); give a run's --output")
    if args.to.suffix.lower() == ".parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            fail_usage(f"--to {args.to}: {PARQUET_HINT}")
    holder = lock_holder(lock_path(output))
    try:
        args.to.parent.mkdir(parents=True, exist_ok=True)
        info = write_table(records, args.to, input_path=input_path)
    except OSError as exc:
        fail_usage(f"--to {args.to}: cannot be written ({exc.strerror or exc})")
    print(f"pipelines: wrote {args.to}: {info.rows} rows, {info.columns} columns", file=sys.stderr)
    if holder is not None:
        print(
            f"pipelines: note: a run (pid {holder}) is still writing {args.records}; "
            "the table holds the records written so far",
            file=sys.stderr,
        )
    if input_path is not None and info.from_records:
        print(
            f"pipelines: note: {info.from_records} rows no longer match their line of "
            f"{input_path}; their input columns come from the records",
            file=sys.stderr,
        )
    return ExitCode.OK


def _records_of(given: Path) -> tuple[Path, Path]:
    """The run's output (absolute) and its records file; exit 2 when there are none."""
    from lc_async_pipelines.runner.records import records_path

    if given.is_dir():
        fail_usage(f"{given}: is a folder; give a run's --output file")
    if given.suffix.lower() in _TABLES:
        records = records_path(given)
        if not records.is_file():
            fail_usage(
                f"{given}: a table without its records ({records.name} not found); "
                "give the records file of the run"
            )
    elif not given.is_file():
        fail_usage(f"{given}: no such file")
    else:
        records = given
    output = Path(os.path.realpath(given))
    return output, Path(os.path.realpath(records))


def _check_destination(args: argparse.Namespace, records: Path, input_path: Path | None) -> None:
    """--to: a .csv or .parquet file, not the records or the input, new unless --force."""
    to: Path = args.to
    suffix = to.suffix.lower()
    if suffix not in _TABLES:
        shown = repr(suffix) if suffix else "no suffix"
        fail_usage(f"--to {to}: {shown} is not a table format; give a .csv or .parquet file")
    if to.is_dir():
        fail_usage(f"--to {to}: is a folder; give a file, e.g. {to}/table{suffix}")
    if Path(os.path.realpath(to)) == records:
        fail_usage(f"--to {to}: is the records file; give another file")
    if input_path is not None and Path(os.path.realpath(to)) == input_path.resolve():
        fail_usage(f"--to {to}: is the run's input file; give another file")
    if os.path.lexists(to) and not args.force:
        fail_usage(f"--to {to}: exists; give --force to replace it")


def _input_of(args: argparse.Namespace, output: Path) -> Path | None:
    """--input, else the input file named in the run's manifest (None: none, or gone)."""
    if args.input is not None:
        if not args.input.is_file():
            fail_usage(f"--input {args.input}: no such file")
        return Path(args.input)
    from lc_async_pipelines.runner.records import manifest_path
    from lc_async_pipelines.runner.records.manifest import read_manifest

    try:
        manifest = read_manifest(output)
    except ValueError as exc:
        fail_usage(f"{manifest_path(output)}: not a run manifest ({exc}); give --input")
    if manifest is None:
        return None
    found = Path(manifest.input_resolved)
    if not found.is_file():
        print(
            f"pipelines: note: the run's input {manifest.input} is gone; "
            "the input columns come from the records (give --input to join it)",
            file=sys.stderr,
        )
        return None
    return found
