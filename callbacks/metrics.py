"""Record per-call latency, time to first token (TTFT) and token usage."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines.callbacks._base import ItemAwareHandler, Token, usage_of

__all__ = ["CallMetrics", "MetricsCallbackHandler"]


@dataclass(frozen=True)
class CallMetrics:
    """Figures of one model call.

    Attributes:
        run_id: LangChain run id of the call.
        item_id: the runner's item id, when the call ran under the runner.
        latency_s: start to end, seconds.
        ttft_s: start to first streamed token, seconds (None when not streamed).
        input_tokens, output_tokens, total_tokens: usage reported by the server.
        error: ``"ErrorType: message"`` when the call failed, else None.
    """

    run_id: UUID
    item_id: str | None
    latency_s: float
    ttft_s: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    error: str | None = None


class MetricsCallbackHandler(ItemAwareHandler):
    """Collect a :class:`CallMetrics` for every chat-model call it sees.

    Clock: ``time.perf_counter`` (monotonic seconds). Handlers run on the event
    loop, so no lock is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CallMetrics] = []
        self._open: dict[UUID, tuple[str | None, float, float | None]] = {}

    async def on_call_start(self, run_id: UUID, item: str | None) -> None:
        """Start the clock for this call."""
        self._open[run_id] = (item, time.perf_counter(), None)

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Stamp the first token."""
        entry = self._open.get(run_id)
        if entry and entry[2] is None:
            self._open[run_id] = (entry[0], entry[1], time.perf_counter())

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the call with its usage."""
        self._close(run_id, usage_of(response), None)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the call as failed."""
        self._close(run_id, {}, f"{type(error).__name__}: {error}")

    def _close(self, run_id: UUID, usage: dict[str, int], error: str | None) -> None:
        self.forget(run_id)
        entry = self._open.pop(run_id, None)
        if entry is None:
            return
        item, start, first = entry
        self.calls.append(
            CallMetrics(
                run_id=run_id,
                item_id=item,
                latency_s=time.perf_counter() - start,
                ttft_s=None if first is None else first - start,
                error=error,
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
