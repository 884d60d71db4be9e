"""The outcome of one item: :class:`Record`, written to the records file as one JSON line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record"]


@dataclass
class Record:
    """The outcome of one item, written as one JSON line.

    Attributes:
        id: the item's stable id.
        line: where the item came from in the input file.
        input: what was given to the chain: the text, or the row (an object).
        output: the chain's output (None on failure): text, or a JSON object
            for structured output.
        error: ``{"type", "message"}`` on failure, else None.
        attempts: attempts made (0 when the input itself was bad).
        latency_s: wall time of the item from its first request's send to its
            end, all attempts and backoff included, seconds: the time it waited
            for the budget before that request is ``queued_s``'s, not this.
        ttft_s: time to first token of the item's first streamed model call,
            from its request's send, seconds; None when no call streamed (a
            call streams only when something reads its tokens).
        queued_s: seconds the item's requests waited for the run's budget
            (RPM, TPM, calls in flight, a 429 pause), summed over its requests.
        usage: input, output and total tokens over all of the item's model calls.
        calls: model calls made (map-reduce makes several).
        throttled: attempts that ended in a rate-limit error (429).
        history: the failed attempts, model calls and item, oldest first (at
            most 20): ``{"stage", "error" (class), "status" (HTTP or None),
            "seconds", "wait_s" (backoff honoured after it, None for the last)}``.
        history_dropped: failed attempts past the 20 kept.
        cost_usd: what the item's model calls cost, USD (``RunOptions.costs``);
            None when a call's model has no price, or costs are not counted.
        cache_saved_usd: what its LLM cache hits would have cost, USD.
        batch_saved_usd: standard price minus Batch API price of its calls, USD.
        service_tier: the tier that answered its calls, as the provider's replies
            say (``response_metadata["service_tier"]``: OpenAI's ``"default"``,
            ``"flex"``; ``"batch"`` through the Batch API); several joined by
            ``","`` in the order first seen (``"flex,default"``: some calls went
            standard); None when no reply said.
        lane: the lane that did the item (``"batch"``, ``"flex"``, ``"standard"``:
            :mod:`lc_async_pipelines.runner.lanes`); None outside a lanes run,
            and then not written.
        lane_saved_usd: its calls at the standard price minus ``cost_usd``, USD
            (written with ``lane``).
        notes: what the chain noted about the item (custom events, merged as
            :func:`~lc_async_pipelines.runner.notes.add_note` does), e.g. ``{"kind": "news",
            "kind_guessed": true, "off_task_retries": 1}``; written only when
            there are some.
        exception: the exception behind ``error``, for callers to match by
            class (never written to the records file).
    """

    id: str
    line: int
    input: str | dict[str, Any]
    output: Any = None
    error: dict[str, str] | None = None
    attempts: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    queued_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    throttled: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    history_dropped: int = 0
    cost_usd: float | None = None
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    service_tier: str | None = None
    lane: str | None = None
    lane_saved_usd: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the item produced an output."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as written to the records file (no ``exception``; ``notes`` if any)."""
        data = {
            "id": self.id,
            "line": self.line,
            "input": self.input,
            "output": _jsonable(self.output),
            "error": self.error,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
            "ttft_s": self.ttft_s,
            "queued_s": round(self.queued_s, 4),
            "usage": self.usage,
            "calls": self.calls,
            "throttled": self.throttled,
            "history": self.history,
            "history_dropped": self.history_dropped,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 9),
            "cache_saved_usd": round(self.cache_saved_usd, 9),
            "batch_saved_usd": round(self.batch_saved_usd, 9),
            "service_tier": self.service_tier,
        }
        if self.notes:
            data["notes"] = self.notes
        if self.lane is not None:  # only in a lanes run: other records keep their shape
            data["lane"] = self.lane
            data["lane_saved_usd"] = round(self.lane_saved_usd, 9)
        return data


def _jsonable(value: Any) -> Any:
    """A Pydantic model (structured output) as its JSON object; other values as they are."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value
