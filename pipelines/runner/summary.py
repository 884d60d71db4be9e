"""A session's totals: :class:`RunSummary`, counted from its records as they are written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines.runner.record import Record

__all__ = ["RunSummary"]


@dataclass
class RunSummary:
    """Totals of a run: items done and failed, retries, wall time (s), tokens, percentiles.

    ``attempt_errors`` counts every failed attempt (model calls and items) by
    error class and HTTP status (``"RateLimitError 429"``); ``failed_by_class``
    counts the items that failed, by their final error's class. ``cost_usd``,
    ``cache_saved_usd`` and ``batch_saved_usd`` sum the records' (USD);
    ``unpriced`` counts the records that made calls of a model with no price,
    ``priced`` those that carry a cost; with unpriced records and no priced
    one, :meth:`as_dict` gives ``cost_usd`` None (unpriced, not $0).
    ``off_task_retries`` sums the records' ``notes.off_task_retries`` (summaries
    asked for again because they opened with text about the text).
    """

    done: int = 0
    failed: int = 0
    retries: int = 0
    throttled: int = 0
    wall_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    unpriced: int = 0
    priced: int = 0
    off_task_retries: int = 0
    attempt_errors: dict[str, int] = field(default_factory=dict)
    failed_by_class: dict[str, int] = field(default_factory=dict)
    ttft_s: list[float] = field(default_factory=list, repr=False)
    latency_s: list[float] = field(default_factory=list, repr=False)

    def add(self, record: Record) -> None:
        """Count ``record`` in the totals."""
        if record.ok:
            self.done += 1
        else:
            self.failed += 1
            kind = (record.error or {}).get("type", "?")
            self.failed_by_class[kind] = self.failed_by_class.get(kind, 0) + 1
        failed_attempts = len(record.history) + record.history_dropped
        self.retries += max(0, failed_attempts - (0 if record.ok else 1))
        for entry in record.history:
            key = entry["error"] + (f" {entry['status']}" if entry.get("status") else "")
            self.attempt_errors[key] = self.attempt_errors.get(key, 0) + 1
        self.throttled += record.throttled
        self.input_tokens += record.usage.get("input_tokens", 0)
        self.output_tokens += record.usage.get("output_tokens", 0)
        self.total_tokens += record.usage.get("total_tokens", 0)
        if record.cost_usd is not None:
            self.cost_usd += record.cost_usd
            self.priced += 1
        elif record.calls:
            self.unpriced += 1
        self.cache_saved_usd += record.cache_saved_usd
        self.batch_saved_usd += record.batch_saved_usd
        self.off_task_retries += int(record.notes.get("off_task_retries", 0))
        if record.ttft_s is not None:
            self.ttft_s.append(record.ttft_s)
        if record.attempts:
            self.latency_s.append(record.latency_s)

    def as_dict(self) -> dict[str, Any]:
        """Return the totals, rates, and p50/p95 of item latency and TTFT (seconds)."""
        items = self.done + self.failed
        return {
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "wall_s": round(self.wall_s, 3),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": None if self.unpriced and not self.priced else round(self.cost_usd, 6),
            "cache_saved_usd": round(self.cache_saved_usd, 6),
            "batch_saved_usd": round(self.batch_saved_usd, 6),
            "unpriced": self.unpriced,
            "off_task_retries": self.off_task_retries,
            "output_tokens_per_s": round(self.output_tokens / self.wall_s, 2) if self.wall_s else 0,
            "items_per_s": round(items / self.wall_s, 3) if self.wall_s else 0,
            "latency_p50_s": _percentile(self.latency_s, 0.50),
            "latency_p95_s": _percentile(self.latency_s, 0.95),
            "ttft_p50_s": _percentile(self.ttft_s, 0.50),
            "ttft_p95_s": _percentile(self.ttft_s, 0.95),
            "attempt_errors": dict(sorted(self.attempt_errors.items())),
            "failed_by_class": dict(sorted(self.failed_by_class.items())),
        }


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)
