"""The end of a run as a person reads it: a short table on stderr, and what to do next.

The full figures stay in ``OUTPUT.summary.json`` (and on stdout with
``--json``); the table keeps those a person acts on: done, failed by class,
wall time against the bound the rate limits set, 429s, tokens, cost or
"unpriced", where the records are, and, after a stop or failures, the exact
command that resumes the run. Figures that cover every session of a resumed
run say so.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Ending", "ending_rows", "print_ending", "resume_command"]


@dataclass(frozen=True)
class Ending:
    """What the table needs besides the summary.

    Attributes:
        records: the records file.
        summary_file: ``OUTPUT.summary.json``.
        argv: the command's arguments (after ``pipelines``), for the resume command.
        stopped: why the run stopped early: ``"signal"``, ``"cost"``, ``"deadline"``,
            or None (it ran to the end).
        rpm: the run's ``--rpm``, if any.
        tpm: the run's ``--tpm``, if any.
    """

    records: str
    summary_file: str
    argv: Sequence[str]
    stopped: str | None = None
    rpm: float | None = None
    tpm: float | None = None


def resume_command(argv: Sequence[str]) -> str:
    """The command that resumes the run: the same one, without ``--restart`` (which starts over).

    argparse takes a flag's unambiguous prefix, so ``--rest`` is dropped too.
    """
    kept = [a for a in argv if not (len(a) > 3 and "--restart".startswith(a))]
    return shlex.join(["pipelines", *kept])


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    minutes, seconds = divmod(round(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _rate_bound(summary: Mapping[str, Any], rpm: float | None, tpm: float | None) -> str:
    """``; rate bound 12.0 s (--rpm 60)``: this session's least wall time under the limits."""
    session = summary.get("session", summary)
    bounds = []
    requests = session.get("requests_sent")
    if rpm and isinstance(requests, int):
        bounds.append((requests / rpm * 60, f"--rpm {rpm:g}"))
    tokens = session.get("input_tokens", 0) + session.get("output_tokens", 0)
    if tpm:
        bounds.append((tokens / tpm * 60, f"--tpm {tpm:g}"))
    if not bounds:
        return "; no --rpm/--tpm bound"
    seconds, flag = max(bounds)
    return f"; rate bound {_seconds(seconds)} ({flag})"


def _cost(summary: Mapping[str, Any]) -> str:
    cost, unpriced = summary.get("cost_usd"), summary.get("unpriced", 0)
    if cost is None:
        return "unpriced (no price for the model)"
    text = f"${cost:.4f}"
    if unpriced:
        text += f" + {_count(unpriced)} records unpriced"
    saved = [
        f"${summary[k]:.4f} saved by the {what}"
        for k, what in (("cache_saved_usd", "cache"), ("batch_saved_usd", "Batch API"))
        if summary.get(k)
    ]
    return ", ".join([text, *saved])


def ending_rows(summary: Mapping[str, Any], ending: Ending) -> list[tuple[str, str]]:
    """The table's rows, (label, value), from a run summary (:func:`whole_run_summary`).

    Top-level figures cover every session of the run; with more than one, the
    rows say so, and give this session's share where it differs.
    """
    sessions = int(summary.get("sessions", 1) or 1)
    session = summary.get("session", summary)
    every = f" (all {sessions} sessions)" if sessions > 1 else ""
    done = _count(summary.get("done"))
    if sessions > 1:
        done += f" (all {sessions} sessions; {_count(session.get('done'))} this session)"
    failed = _count(summary.get("failed"))
    by_class = summary.get("failed_by_class") or {}
    if by_class:
        failed += ": " + ", ".join(f"{kind} {_count(n)}" for kind, n in by_class.items())
    wall = _seconds(float(summary.get("session_wall_s", summary.get("wall_s", 0.0))))
    if sessions > 1:
        wall += f" this session, {_seconds(float(summary.get('total_wall_s', 0.0)))}{every}"
    tokens = (
        f"{_count(summary.get('total_tokens'))} ({_count(summary.get('input_tokens'))} in, "
        f"{_count(summary.get('output_tokens'))} out){every}"
    )
    rows = [
        ("done", done),
        ("failed", failed),
        ("wall", wall + _rate_bound(summary, ending.rpm, ending.tpm)),
        ("429s", _count(summary.get("throttled_429")) + every),
        ("tokens", tokens),
        ("cost", _cost(summary) + every),
        ("records", f"{ending.records} (full summary: {ending.summary_file})"),
    ]
    off_task = int(summary.get("off_task_retries") or 0)
    if off_task:  # summaries asked for again (lc_async_pipelines.on_task)
        rows.insert(4, ("off task", f"{_count(off_task)} summaries asked for again"))
    rows.extend(_next_step(summary, ending))
    return rows


def _next_step(summary: Mapping[str, Any], ending: Ending) -> list[tuple[str, str]]:
    """After a stop or failures: what to do, the command being printed on its own line."""
    if ending.stopped == "cost":
        return [("stopped", "at --max-cost; the same command with a higher --max-cost goes on:")]
    if ending.stopped is not None:
        return [("stopped", "run the same command to resume:")]
    failed = summary.get("failed", 0)
    if not failed:
        return []
    # a bad input row (RowError) fails again until the input is fixed: say so
    bad = int((summary.get("failed_by_class") or {}).get("RowError", 0))
    rows = f"{_count(bad)} bad input row" + ("" if bad == 1 else "s")
    if bad == failed:
        return [("retry", f"fix the {rows} (each record names its line), then run:")]
    again = f"run the same command to run the {_count(failed)} failed again"
    if bad:
        again += f" ({rows} will fail until fixed)"
    return [("retry", again + ":")]


def print_ending(title: str, rows: Sequence[tuple[str, str]], argv: Sequence[str]) -> None:
    """Print ``title``, the rows as a two-column table, and the resume command, on stderr.

    The command (:func:`resume_command` of ``argv``) follows when the last row
    asks for it (a stop, failures), on a line of its own that the terminal
    wraps softly, so it copies whole. On a terminal the labels are bold; off
    one, plain lines (no control characters).
    """
    command = resume_command(argv) if rows and rows[-1][0] in ("stopped", "retry") else None
    if not sys.stderr.isatty():
        lines = [title, *(f"  {label:<8} {value}" for label, value in rows)]
        if command:
            lines.append(f"  {command}")
        print("\n".join(lines), file=sys.stderr, flush=True)
        return
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console = Console(stderr=True, highlight=False)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, Text(value))
    console.print(Text(title, style="bold"))
    console.print(Padding(table, (0, 0, 0, 2)))
    if command:
        console.print(Text("  " + command, style="cyan"), soft_wrap=True)
