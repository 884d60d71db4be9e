"""The figures of a run, kept up to date one record at a time: memory does not grow with the run.

Counts, tokens, cost, retries and 429s are the run summary's own
(:class:`~lc_async_pipelines.runner.records.RunTotals`); over them, latency
and TTFT histograms, series over the run (by record order: records carry no
clock time) and failures by error class, each with its series.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines.runner.records import RunTotals
from lc_async_pipelines.runner.records.scan import count_of

__all__ = ["SECONDS_EDGES", "FailureClass", "Histogram", "RunStats", "Series"]

SECONDS_EDGES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""Upper edges of the latency and TTFT histogram bins, seconds (one more bin above the last)."""

_SERIES_BUCKETS = 60
_MESSAGE_CHARS = 300
_UNREADABLE_KEPT = 10


@dataclass
class Histogram:
    """Counts of values in bins: ``counts[i]`` holds values up to ``edges[i]``, the last the rest.

    Attributes:
        edges: upper edges of the bins, ascending.
        counts: values counted in each bin (one more than edges).
    """

    edges: tuple[float, ...] = SECONDS_EDGES
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.edges) + 1)

    def add(self, value: float) -> None:
        """Count one value (seconds)."""
        self.counts[bisect.bisect_left(self.edges, value)] += 1

    def as_dict(self) -> dict[str, Any]:
        """Return ``{"edges": [...], "counts": [...]}`` (one more count than edges)."""
        return {"edges": list(self.edges), "counts": list(self.counts)}


@dataclass
class Series:
    """Sums over the run by record order, in at most ``buckets`` buckets.

    Bucket ``i`` covers records ``i * width`` to ``(i + 1) * width - 1``
    (0-based); when the run outgrows the buckets, neighbours are merged and
    the width doubles, so memory stays bounded.
    """

    buckets: int = _SERIES_BUCKETS
    width: int = 1
    values: list[float] = field(default_factory=list)

    def add(self, index: int, value: float = 1.0) -> None:
        """Add ``value`` at record ``index`` (0-based; indexes only grow, or stay)."""
        slot = index // self.width
        while slot >= self.buckets:
            merged = [sum(self.values[i : i + 2]) for i in range(0, len(self.values), 2)]
            self.values, self.width = merged, self.width * 2
            slot = index // self.width
        if slot >= len(self.values):
            self.values.extend([0.0] * (slot + 1 - len(self.values)))
        self.values[slot] += value

    def as_dict(self, records: int) -> dict[str, Any]:
        """Return ``{"width", "values"}``, padded with zeros up to ``records`` records."""
        padded = list(self.values)
        filled = -(-records // self.width) if records else 0
        padded.extend([0.0] * max(0, min(filled, self.buckets) - len(padded)))
        return {"width": self.width, "values": padded}


@dataclass
class FailureClass:
    """The failed records of one error class: how many, where in the run, the last message."""

    count: int = 0
    first_record: int = 0
    last_record: int = 0
    last_id: str = ""
    last_message: str = ""
    series: Series = field(default_factory=Series)

    def as_dict(self, records: int) -> dict[str, Any]:
        """Return the class's figures; record numbers are 1-based."""
        return {
            "count": self.count,
            "first_record": self.first_record,
            "last_record": self.last_record,
            "last_id": self.last_id,
            "last_message": self.last_message,
            "series": self.series.as_dict(records),
        }


@dataclass
class RunStats:
    """Every figure of the page, over the records added so far.

    Attributes:
        totals: the run summary's counts (done, failed, retries, 429s, tokens, cost).
        records: records added.
        calls: model calls over those records.
        latency: item latency histogram, seconds.
        ttft: time-to-first-token histogram, seconds (items that streamed).
        throttled: 429s by record order; ``retries``, ``failed`` likewise.
        failures: failed records by error class.
        unreadable: lines that are not records (line number, why), the last few.
    """

    totals: RunTotals = field(default_factory=RunTotals)
    records: int = 0
    calls: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    throttled: Series = field(default_factory=Series)
    retries: Series = field(default_factory=Series)
    failed: Series = field(default_factory=Series)
    failures: dict[str, FailureClass] = field(default_factory=dict)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    unreadable_count: int = 0

    def add(self, record: dict[str, Any]) -> None:
        """Count one record (a parsed line of the records file)."""
        index = self.records
        self.records += 1
        before_retries, before_429 = self.totals.retries, self.totals.throttled
        self.totals.add(record)
        self.retries.add(index, self.totals.retries - before_retries)
        self.throttled.add(index, self.totals.throttled - before_429)
        self.calls += count_of(record.get("calls"))
        latency, ttft = _seconds(record.get("latency_s")), _seconds(record.get("ttft_s"))
        if latency is not None:
            self.latency.add(latency)
        if ttft is not None:
            self.ttft.add(ttft)
        error = record.get("error")
        if error is not None:
            self.failed.add(index)
            self._add_failure(error, index, str(record["id"]))

    def _add_failure(self, error: Any, index: int, item: str) -> None:
        kind = str(error.get("type", "?")) if isinstance(error, dict) else "?"
        failure = self.failures.setdefault(kind, FailureClass(first_record=index + 1))
        failure.count += 1
        failure.last_record = index + 1
        failure.last_id = item
        message = error.get("message", "") if isinstance(error, dict) else ""
        failure.last_message = str(message)[:_MESSAGE_CHARS]
        failure.series.add(index)

    def add_unreadable(self, number: int, problem: str) -> None:
        """Count a line that is not a record (line ``number``, 1-based; ``problem``: why)."""
        self.unreadable_count += 1
        self.unreadable = [*self.unreadable, (number, problem)][-_UNREADABLE_KEPT:]

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-able values (the page's ``stats``)."""
        records = self.records
        return {
            "records": records,
            "calls": self.calls,
            "totals": self.totals.as_dict(),
            "latency": self.latency.as_dict(),
            "ttft": self.ttft.as_dict(),
            "throttled": self.throttled.as_dict(records),
            "retries": self.retries.as_dict(records),
            "failed": self.failed.as_dict(records),
            "failures": {
                kind: failure.as_dict(records)
                for kind, failure in sorted(self.failures.items(), key=lambda kv: -kv[1].count)
            },
            "unreadable": {
                "count": self.unreadable_count,
                "last": [list(entry) for entry in self.unreadable],
            },
        }


def _seconds(value: Any) -> float | None:
    """``value`` as seconds when it is a number of them, else None (absent, or not a number)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
