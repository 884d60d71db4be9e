"""Push streamed tokens onto an ``asyncio.Queue`` for other consumers (a web response, a UI)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines.callbacks._base import ItemAwareHandler, Token, token_text, usage_of

__all__ = ["QueueCallbackHandler", "StreamEvent"]


@dataclass(frozen=True)
class StreamEvent:
    """One event of a model call.

    ``kind`` is ``"start"``, ``"token"`` (``text`` holds the token), ``"end"``
    (``usage`` holds input/output/total tokens) or ``"error"`` (``text`` holds
    ``"ErrorType: message"``).
    """

    kind: Literal["start", "token", "end", "error"]
    run_id: UUID
    item_id: str | None = None
    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)


class QueueCallbackHandler(ItemAwareHandler):
    """Put a :class:`StreamEvent` on ``queue`` for each start, token, end and error.

    Args:
        queue: the consumer's queue; unbounded queues never block the model call,
            a bounded one applies back-pressure to it. The handler never puts
            ``None``, so a consumer may use it as its own end marker.
    """

    def __init__(
        self, queue: asyncio.Queue[StreamEvent] | asyncio.Queue[StreamEvent | None]
    ) -> None:
        super().__init__()
        self.queue = queue

    async def on_call_start(self, run_id: UUID, item: str | None) -> None:
        """Emit ``start``."""
        await self.queue.put(StreamEvent("start", run_id, item))

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``token``."""
        await self.queue.put(StreamEvent("token", run_id, self.item(run_id), token_text(token)))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``end`` with the call's token usage."""
        item = self.forget(run_id)
        await self.queue.put(StreamEvent("end", run_id, item, usage=usage_of(response)))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``error``."""
        item = self.forget(run_id)
        text = f"{type(error).__name__}: {error}"
        await self.queue.put(StreamEvent("error", run_id, item, text))
