"""A run's batches as a session tracks them: state-file entries, waiting calls, token pools."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.batch._files import BatchRequest, LineResult, failed
from lc_async_pipelines.runner.batch.options import BATCH_STATE_FORMAT
from lc_async_pipelines.runner.batch.provider import BatchStatus
from lc_async_pipelines.runner.records.files import write_atomic

__all__ = [
    "TERMINAL",
    "Parked",
    "TokenPool",
    "TrackedBatch",
    "read_state",
    "record_batch",
    "write_state",
]

# OpenAI's ends, and Anthropic's one ("ended", whatever became of its requests).
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled", "ended"})


class TokenPool:
    """The enqueued-token limit of one model: estimated input tokens of its batches in progress."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, tokens: int) -> AsyncIterator[None]:
        if self.capacity is None:
            yield
            return
        capacity = self.capacity
        share = min(tokens, capacity)  # a batch larger than the limit waits for all of it
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + share <= capacity)
            self.used += share
        try:
            yield
        finally:
            self.used -= share
            async with self._changed:
                self._changed.notify_all()


class TrackedBatch:
    """One batch of the run: its record in the state file, and the calls waiting on it."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self.waiters: dict[str, asyncio.Future[LineResult]] = {}
        self.results: dict[str, LineResult] | None = None
        self.task: asyncio.Task[None] | None = None
        self.held = False  # its tokens are in the model's pool
        self.fresh = False  # uploaded by this session (else recorded by an earlier one)
        self.part: list[BatchRequest] | None = None  # its requests, until it is created

    @property
    def terminal(self) -> bool:
        return self.entry.get("status") in TERMINAL

    def missing(self) -> LineResult:
        """The result of a request the batch's files do not mention."""
        status, batch_id = self.entry.get("status"), self.entry.get("id")
        if batch_id is None:  # recorded by a killed run, never created (no input kept)
            return failed(503, "an earlier run recorded this batch but never created it", "lost")
        if status == "failed" and self.entry.get("errors"):
            reason = f"batch {batch_id} failed: {self.entry['errors']}"
            return failed(503, reason, "batch_failed")
        if status in ("completed", "ended"):
            return failed(500, f"batch {batch_id} completed without this request", "missing")
        return failed(503, f"batch {batch_id} ended {status} before this request ran", str(status))

    def resolve(self, results: dict[str, LineResult]) -> None:
        self.results = results
        for cid, future in self.waiters.items():
            if not future.done():
                future.set_result(self.results.pop(cid, self.missing()))
        self.waiters.clear()

    def fail(self, result: LineResult) -> None:
        for future in self.waiters.values():
            if not future.done():
                future.set_result(result)
        self.waiters.clear()


@dataclass
class Parked:
    request: BatchRequest
    future: asyncio.Future[LineResult]


def record_batch(entry: dict[str, Any], batch: BatchStatus) -> None:
    """Copy what the state file keeps of a batch (as its provider reports it) into ``entry``."""
    entry.update(id=batch.id, status=batch.status, **batch.fields)
    if batch.error:
        entry["errors"] = batch.error


def read_state(path: Path) -> list[dict[str, Any]]:
    """Return the batch entries recorded in ``path`` (a ``OUTPUT.batches.json``).

    Raises:
        ConfigurationError: not a batches file of this version (run again with
            --restart to move it aside).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BATCH_STATE_FORMAT or not isinstance(data["batches"], list):
            raise ValueError("unknown format")
        entries = [e for e in data["batches"] if isinstance(e, dict)]
        for entry in entries:
            if not isinstance(entry.get("custom_ids"), list):
                raise ValueError("a batch without custom_ids")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        msg = f"{path}: not a batches file of this version ({exc}); "
        msg += "run again with --restart to move it aside"
        raise ConfigurationError(msg) from None
    return entries


def write_state(path: Path, entries: list[dict[str, Any]]) -> None:
    """Record ``entries`` in ``path`` atomically."""
    data = {"format": BATCH_STATE_FORMAT, "batches": entries}
    write_atomic(path, json.dumps(data, separators=(",", ":")) + "\n")
