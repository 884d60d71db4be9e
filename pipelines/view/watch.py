"""One run followed: its records tailed into figures and an index; its manifest, summary and lock.

Reads only: the records file from an offset (:class:`~.tail.RecordTail`),
``OUTPUT.manifest.json`` and ``OUTPUT.summary.json`` when they change, and
whether a run holds ``OUTPUT.lock`` (a shared, non-blocking probe that
takes nothing from the run). Nothing is written.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lc_async_pipelines.runner.records import (
    RunManifest,
    lock_holder,
    lock_path,
    manifest_path,
    records_path,
    summary_path,
)
from lc_async_pipelines.runner.records.manifest import read_manifest
from lc_async_pipelines.view.index import LineIndex, SearchPage, read_rows, search
from lc_async_pipelines.view.stats import RunStats
from lc_async_pipelines.view.tail import RecordTail, TailBatch

__all__ = ["RATE_WINDOW_S", "RunWatch"]

RATE_WINDOW_S = 60.0
"""The measured rates are over the records that arrived in this many seconds, while watched."""

_MIN_WINDOW_S = 5.0


class RunWatch:
    """The records, manifest and summary of the run writing ``output``, followed.

    :meth:`step` and :meth:`refresh` read the files (call them from one
    thread or task); :meth:`state`, :meth:`page` and :meth:`search` answer
    from what was read, from any thread.

    Args:
        output: the run's ``--output`` (for a table, its records are read
            from ``OUTPUT.records.jsonl``).
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.records = records_path(output)
        self.tail = RecordTail(self.records)
        self.stats = RunStats()
        self.index = LineIndex()
        self.caught_up = False
        self.replaced = 0
        self.size = 0
        self.missing = False
        self.problem: str | None = None
        self.manifest: RunManifest | None = None
        self.manifest_problem: str | None = None
        self.summary: dict[str, Any] | None = None
        self.holder: str | None = None
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int, int, int]] = deque()
        self._seen: dict[Path, int] = {}

    def step(self, max_bytes: int = 4 << 20) -> bool:
        """Read what the run appended since the last step, ``max_bytes`` at most.

        Returns:
            True when more is there to read at once (call again); False when
            the file is read to its end (a partial last line aside).
        """
        try:
            batch = self.tail.read(max_bytes)
        except OSError as exc:
            self.problem = f"{self.records}: cannot be read ({exc.strerror or exc})"
            return False
        self.problem = None
        with self._lock:
            self._take(batch)
            more = bool(batch.lines) and self.tail.pending > 0
            if not more:
                self.caught_up = True
                self._sample(time.monotonic())
        return more

    def _take(self, batch: TailBatch) -> None:
        if batch.replaced:
            self.replaced += 1
            self.stats, self.index, self.caught_up = RunStats(), LineIndex(), False
            self._samples.clear()
        for line in batch.lines:
            if line.record is None:
                self.stats.add_unreadable(line.number, line.problem or "?")
            else:
                self.index.add(line.offset, failed=line.record["error"] is not None)
                self.stats.add(line.record)
        self.size, self.missing = batch.size, batch.missing

    def _sample(self, now: float) -> None:
        """Keep (time, records, calls, tokens) over the rate window, and one sample before it."""
        totals = self.stats.totals
        self._samples.append((now, self.stats.records, self.stats.calls, totals.total_tokens))
        while len(self._samples) > 2 and self._samples[1][0] < now - RATE_WINDOW_S:
            self._samples.popleft()

    def refresh(self) -> None:
        """Read the manifest and the summary again if they changed; probe the lock."""
        path = manifest_path(self.output)
        if self._changed(path):
            try:
                self.manifest, self.manifest_problem = read_manifest(self.output), None
            except (ValueError, OSError) as exc:
                self.manifest, self.manifest_problem = None, f"{path.name}: {exc}"
        path = summary_path(self.output)
        if self._changed(path):
            self.summary = _json_object(path)
        self.holder = lock_holder(lock_path(self.output))

    def _changed(self, path: Path) -> bool:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        changed = self._seen.get(path) != mtime
        self._seen[path] = mtime
        return changed

    def status(self) -> str:
        """Return ``running``, ``finished`` or ``stopped``.

        ``running``: a run holds the lock; ``finished``: its summary is newer
        than its records and they cover the items the manifest counted (when
        it counted them); ``stopped``: no run, and no summary since the last
        record (killed), or fewer records than items (interrupted).
        """
        if self.holder is not None:
            return "running"
        try:
            summary_newer = (
                summary_path(self.output).stat().st_mtime >= self.records.stat().st_mtime
            )
        except OSError:
            summary_newer = False
        items = self.manifest.items if self.manifest else None
        complete = items is None or self.stats.records >= items
        return "finished" if summary_newer and self.summary is not None and complete else "stopped"

    def state(self) -> dict[str, Any]:
        """Return everything the page shows but the table, as JSON-able values.

        Keys: ``run`` (files, pipeline, model, status, pid), ``progress``
        (records, items, fraction, bytes read), ``rate`` (limits and measured
        RPM, TPM, items per minute), ``eta_s``, ``cost`` (so far, projected,
        USD), ``stats`` (:meth:`RunStats.as_dict`) and ``problems``.
        """
        with self._lock:
            stats = self.stats.as_dict()
            samples = list(self._samples)
            offset, pending = self.tail.offset, self.tail.pending
        status = self.status()
        rate = self._rate(samples, stats, status)
        progress = self._progress(stats, offset, pending)
        return {
            "run": self._run(status),
            "progress": progress,
            "rate": rate,
            "eta_s": _eta(progress, rate, status),
            "cost": _cost(stats, progress["items"]),
            "stats": stats,
            "problems": [p for p in (self.problem, self.manifest_problem) if p],
        }

    def _run(self, status: str) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "output": str(self.output),
            "records_file": str(self.records),
            "status": status,
            "pid": self.holder,
            "pipeline": manifest.pipeline if manifest else None,
            "model": manifest.model if manifest else None,
            "input": manifest.input if manifest else None,
            "created_at": manifest.created_at if manifest else None,
            "sessions": manifest.sessions if manifest else None,
            "summary": self.summary is not None,
            "replaced": self.replaced,
        }

    def _progress(self, stats: dict[str, Any], offset: int, pending: int) -> dict[str, Any]:
        items = self.manifest.items if self.manifest else None
        records = stats["records"]
        return {
            "records": records,
            "done": stats["totals"]["done"],
            "failed": stats["totals"]["failed"],
            "items": items,
            "fraction": min(1.0, records / items) if items else None,
            "read_bytes": offset,
            "size_bytes": self.size,
            "caught_up": self.caught_up,
            "partial_bytes": pending if self.caught_up else 0,
            "missing": self.missing,
        }

    def _rate(
        self, samples: list[tuple[float, int, int, int]], stats: dict[str, Any], status: str
    ) -> dict[str, Any]:
        limits = self.manifest.limits if self.manifest else {}
        measured = _window_rate(samples) if status == "running" else None
        source = "watched" if measured else None
        if measured is None:
            measured, source = self._whole_rate(stats, status)
        per_min = measured or (None, None, None)
        return {
            "rpm_limit": limits.get("rpm"),
            "tpm_limit": limits.get("tpm"),
            "max_in_flight": limits.get("max_in_flight"),
            "items_per_min": per_min[0],
            "rpm": per_min[1],
            "tpm": per_min[2],
            "source": source,
        }

    def _whole_rate(
        self, stats: dict[str, Any], status: str
    ) -> tuple[tuple[float, float, float] | None, str | None]:
        """Rates over the run's wall time: the summary's, or since a single session began."""
        wall = None
        if status != "running" and self.summary is not None:
            wall = self.summary.get("total_wall_s") or self.summary.get("wall_s")
        elif self.manifest and self.manifest.sessions == 1 and self.manifest.session_started_at:
            started = datetime.fromisoformat(self.manifest.session_started_at)
            wall = (datetime.now(UTC) - started).total_seconds()
        if not isinstance(wall, int | float) or wall <= 0:
            return None, None
        minutes = wall / 60
        tokens = stats["totals"]["total_tokens"]
        return (stats["records"] / minutes, stats["calls"] / minutes, tokens / minutes), "run"

    def page(self, number: int, size: int, *, failed_only: bool) -> dict[str, Any]:
        """Return page ``number`` (1-based) of ``size`` records.

        Returns:
            ``{"rows", "total", "page", "pages"}``; a page past the last is the last.
        """
        with self._lock:
            total = self.index.count(failed_only=failed_only)
            pages = max(1, -(-total // size))
            number = min(number, pages)
            wanted = self.index.page(number, size, failed_only=failed_only)
        rows = read_rows(self.records, wanted) if wanted else []
        return {"rows": rows, "total": total, "page": number, "pages": pages}

    def search(self, query: str, start: int, size: int, *, failed_only: bool) -> SearchPage:
        """Return up to ``size`` records matching ``query`` from record ``start`` on.

        One call reads a bounded share of the file (:func:`~.index.search`).
        """
        index = self.index  # a replaced file gets a new index; this one only grows
        return search(self.records, index, query, start=start, size=size, failed_only=failed_only)


def _window_rate(
    samples: list[tuple[float, int, int, int]],
) -> tuple[float, float, float] | None:
    """(items, calls, tokens) per minute over the watched window; None before it is long enough."""
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < _MIN_WINDOW_S:
        return None
    (t0, r0, c0, k0), (t1, r1, c1, k1) = samples[0], samples[-1]
    minutes = (t1 - t0) / 60
    return (r1 - r0) / minutes, (c1 - c0) / minutes, (k1 - k0) / minutes


def _eta(progress: dict[str, Any], rate: dict[str, Any], status: str) -> float | None:
    items, per_min = progress["items"], rate["items_per_min"]
    if status != "running" or not items or not per_min:
        return None
    return float(max(0, items - progress["records"]) / per_min * 60)


def _cost(stats: dict[str, Any], items: int | None) -> dict[str, Any]:
    so_far = stats["totals"]["cost_usd"]
    records = stats["records"]
    projected = so_far / records * items if so_far is not None and records and items else None
    return {
        "so_far_usd": so_far,
        "projected_usd": projected,
        "unpriced": stats["totals"]["unpriced"],
    }


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
