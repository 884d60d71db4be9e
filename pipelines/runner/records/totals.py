"""Totals over every record of a records file, all sessions: what the run summary reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.runner.records.scan import count_of, numbered_lines, parse_line, usd_of

if TYPE_CHECKING:
    from lc_async_pipelines.runner.summary import RunSummary

__all__ = ["RunTotals", "run_totals", "whole_run_summary"]


@dataclass
class RunTotals:
    """Totals over every record of a records file (all sessions), from :func:`run_totals`.

    Attributes:
        done: done records.
        failed: failed records.
        retries: retries, counted as ``RunSummary`` counts them.
        throttled: attempts that ended in a rate-limit error (429).
        input_tokens: input tokens of all records.
        output_tokens: output tokens of all records.
        total_tokens: total tokens of all records.
        cost_usd: cost of all records, USD.
        cache_saved_usd: what the LLM cache saved over all records, USD.
        batch_saved_usd: what the Batch API price saved over all records, USD.
        unpriced: records that made model calls but carry no cost (no price).
        priced: records that carry a cost.
        attempt_errors: failed attempts by error class and HTTP status.
        failed_by_class: failed records by their error's class.
        unreadable: lines that are not records (a partial last line), skipped.
    """

    done: int = 0
    failed: int = 0
    retries: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    unpriced: int = 0
    priced: int = 0
    attempt_errors: dict[str, int] = field(default_factory=dict)
    failed_by_class: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record, as read from the file (a dict)."""
        error = record.get("error")
        if error is None:
            self.done += 1
        else:
            self.failed += 1
            kind = str(error.get("type", "?")) if isinstance(error, dict) else "?"
            self.failed_by_class[kind] = self.failed_by_class.get(kind, 0) + 1
        history = record.get("history")
        entries = history if isinstance(history, list) else []
        failed_attempts = len(entries) + count_of(record.get("history_dropped"))
        self.retries += max(0, failed_attempts - (0 if error is None else 1))
        for entry in entries:
            if isinstance(entry, dict):
                status = entry.get("status")
                key = str(entry.get("error", "?")) + (f" {status}" if status else "")
                self.attempt_errors[key] = self.attempt_errors.get(key, 0) + 1
        self.throttled += count_of(record.get("throttled"))
        usage = record.get("usage")
        if isinstance(usage, dict):
            self.input_tokens += count_of(usage.get("input_tokens"))
            self.output_tokens += count_of(usage.get("output_tokens"))
            self.total_tokens += count_of(usage.get("total_tokens"))
        cost = record.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += cost
            self.priced += 1
        elif count_of(record.get("calls")):
            self.unpriced += 1
        self.cache_saved_usd += usd_of(record.get("cache_saved_usd"))
        self.batch_saved_usd += usd_of(record.get("batch_saved_usd"))

    def as_dict(self) -> dict[str, Any]:
        """Return the totals under the names ``RunSummary.as_dict`` uses.

        ``cost_usd`` is None when records made calls but none carries a cost
        (no price for the model), as in the records: unpriced, not $0.
        """
        return {
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": None if self.unpriced and not self.priced else round(self.cost_usd, 6),
            "cache_saved_usd": round(self.cache_saved_usd, 6),
            "batch_saved_usd": round(self.batch_saved_usd, 6),
            "unpriced": self.unpriced,
            "attempt_errors": dict(sorted(self.attempt_errors.items())),
            "failed_by_class": dict(sorted(self.failed_by_class.items())),
        }


def run_totals(output: Path) -> RunTotals:
    """Total every record in ``output``, one line at a time (memory does not grow with it).

    Args:
        output: the records file.

    Returns:
        The totals; all zero when ``output`` does not exist. Lines that are not
        records are skipped and counted in ``unreadable``.
    """
    totals = RunTotals()
    if not output.is_file():
        return totals
    for _, raw in numbered_lines(output):
        record, _problem = parse_line(raw)
        if record is None:
            totals.unreadable += 1
        else:
            totals.add(record)
    return totals


def whole_run_summary(
    output: Path,
    session: RunSummary,
    *,
    sessions: int,
    previous_wall_s: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary of the whole run: every record in ``output``, and this session.

    Top level, over all records in the file (all sessions): ``done``,
    ``failed``, ``retries``, ``throttled_429``, ``input_tokens``,
    ``output_tokens``, ``total_tokens``, ``cost_usd``, ``cache_saved_usd``,
    ``batch_saved_usd``, ``unpriced``, ``attempt_errors``, ``failed_by_class``,
    ``wall_s`` (``previous_wall_s`` + this session's, as ``total_wall_s``),
    ``items_per_s`` and ``output_tokens_per_s`` over that wall time; then
    ``sessions`` and ``session_wall_s``. ``cost_usd`` is None when no record
    carries a cost but some made calls (unpriced). The figures only this
    session can give are this session's at top level too: the p50/p95
    percentiles and ``extra`` (``requests_sent``, ``cache_hits``).
    ``"session"`` holds this session's own ``RunSummary.as_dict()`` with
    ``extra``. On a first session the top level equals what
    ``RunSummary.as_dict()`` gave, plus the new keys.

    Args:
        output: the records file (flushed).
        session: this session's totals.
        sessions: sessions of the run, this one included.
        previous_wall_s: wall time of the earlier sessions, seconds.
        extra: this session's further figures.

    Returns:
        A JSON-able dict.
    """
    mine = {**session.as_dict(), **(extra or {})}
    whole = run_totals(output).as_dict()
    total_wall = previous_wall_s + session.wall_s
    items = whole["done"] + whole["failed"]
    return {
        **mine,
        **whole,
        "wall_s": round(total_wall, 3),
        "output_tokens_per_s": round(whole["output_tokens"] / total_wall, 2) if total_wall else 0,
        "items_per_s": round(items / total_wall, 3) if total_wall else 0,
        "sessions": sessions,
        "session_wall_s": round(session.wall_s, 3),
        "total_wall_s": round(total_wall, 3),
        "session": mine,
    }
