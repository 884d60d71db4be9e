"""Each item's attempt history: which attempt failed, how, and how long it cost.

The runner opens an :class:`AttemptLog` per item and makes it current (a
``ContextVar``, so the item's nested model calls, map-reduce chunks included,
write into the same log); the budgeted model appends one entry per failed
model-call attempt, the runner one per failed item attempt that no call logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines.runner.retry import is_rate_limit

# Enough to see a pattern; a pathological item does not bloat its record.
MAX_ENTRIES = 20


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an error (``openai.APIStatusError`` and the like), if any."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


@dataclass
class AttemptLog:
    """The failed attempts of one item, bounded to :data:`MAX_ENTRIES` entries.

    Attributes:
        entries: ``{"stage": "call" | "item", "error": class name, "status": HTTP
            status or None, "seconds": the attempt's duration, "wait_s": the
            backoff honoured before the next attempt (None for the last)}``.
        dropped: failed attempts past the bound, counted but not kept.
        throttled: attempts that ended in a rate-limit error (429).
        exhausted: a model call used up its own retries; retrying the whole item
            would repeat the calls that succeeded, so the runner does not.
        queued_s: seconds the item's requests waited for the budget, summed
            (requests sent at once each count their own wait).
        first_queued_s: the wait of the item's first request, seconds (None
            before one is sent, or when every call was a cache hit).
        first_sent_at: ``time.perf_counter()`` when that first request left the budget.
        flex_started: when the item's first flex request was sent, on the flex
            options' clock (None: no flex request yet); its calls go at the
            standard tier once refused past the flex wait from then.
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    throttled: int = 0
    exhausted: bool = False
    queued_s: float = 0.0
    first_queued_s: float | None = None
    first_sent_at: float | None = None
    flex_started: float | None = None
    _last: BaseException | None = field(default=None, repr=False)

    def note_request(self, queued_s: float, *, sent_at: float) -> None:
        """Count one request's wait for the budget (``queued_s``, seconds), sent at ``sent_at``."""
        self.queued_s += queued_s
        if self.first_sent_at is None or sent_at < self.first_sent_at:
            self.first_sent_at = sent_at
            self.first_queued_s = queued_s

    def add(self, exc: BaseException, *, stage: str, seconds: float) -> dict[str, Any]:
        """Log one failed attempt and return its entry (kept or not)."""
        self._last = exc
        self.throttled += is_rate_limit(exc)
        entry: dict[str, Any] = {
            "stage": stage,
            "error": type(exc).__name__,
            "status": status_of(exc),
            "seconds": round(seconds, 3),
            "wait_s": None,
        }
        if len(self.entries) < MAX_ENTRIES:
            self.entries.append(entry)
        else:
            self.dropped += 1
        return entry

    def logged(self, exc: BaseException) -> bool:
        """True when ``exc`` is the last error a call already logged."""
        return exc is self._last


_CURRENT: ContextVar[AttemptLog | None] = ContextVar("pipelines_attempt_log", default=None)


def current() -> AttemptLog | None:
    """The log of the item being run in this context, or None outside the runner."""
    return _CURRENT.get()


@contextmanager
def logging_into(log: AttemptLog) -> Iterator[AttemptLog]:
    """Make ``log`` current for the calls made inside the block."""
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)
