"""Record per-call latency, time to first token (TTFT) and token usage."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.callbacks.base import TaggedCallbackHandler, usage_of

__all__ = ["CallMetrics", "MetricsCallbackHandler"]


@dataclass(frozen=True)
class CallMetrics:
    """Figures of one model call.

    Attributes:
        run_id: LangChain run id of the call.
        item_id: the runner's item id, when the call ran under the runner.
        latency_s: start to end, seconds.
        ttft_s: start to first streamed token, seconds (None when not streamed).
        input_tokens: prompt tokens reported by the server.
        output_tokens: generated tokens reported by the server.
        total_tokens: their sum, as reported by the server.
        error: ``"ErrorType: message"`` when the call failed, else None.
        tag: which item or invocation the call belongs to: ``item_id`` when set,
            else ``"call-N"``, shared by every model call of one top-level
            invocation (see :class:`~lc_async_pipelines.callbacks.base.TaggedCallbackHandler`).
    """

    run_id: UUID
    item_id: str | None
    latency_s: float
    ttft_s: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    error: str | None = None
    tag: str = ""


class MetricsCallbackHandler(TaggedCallbackHandler):
    """Collect a :class:`CallMetrics` in :attr:`calls` for every model call it sees, as it ends.

    A call cancelled in flight is recorded, as failed, when its top-level run
    ends. Clock: ``time.perf_counter`` (monotonic seconds). Handlers run on the
    event loop, so no lock is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CallMetrics] = []
        self._open: dict[UUID, tuple[float, float | None]] = {}

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        """Start the clock for this call."""
        self._open[run_id] = (time.perf_counter(), None)

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        """Stamp the first token."""
        entry = self._open.get(run_id)
        if entry and entry[1] is None:
            self._open[run_id] = (entry[0], time.perf_counter())

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        """Close the call with its usage."""
        self._close(run_id, tag, usage_of(response), None)

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        """Close the call as failed."""
        self._close(run_id, tag, {}, f"{type(error).__name__}: {error_text(error)}")

    def _close(self, run_id: UUID, tag: str, usage: dict[str, int], error: str | None) -> None:
        entry = self._open.pop(run_id, None)
        if entry is None:
            return
        start, first = entry
        self.calls.append(
            CallMetrics(
                run_id=run_id,
                item_id=self.item(run_id),
                latency_s=time.perf_counter() - start,
                ttft_s=None if first is None else first - start,
                error=error,
                tag=tag,
                **usage,
            )
        )

    def usage(self) -> dict[str, int]:
        """Return input, output and total tokens summed over all calls."""
        keys = ("input_tokens", "output_tokens", "total_tokens")
        return {k: sum(getattr(c, k) for c in self.calls) for k in keys}

    def first_ttft(self) -> float | None:
        """Return the TTFT of the first call that streamed, in seconds."""
        return next((c.ttft_s for c in self.calls if c.ttft_s is not None), None)
