"""Push streamed tokens onto an ``asyncio.Queue`` for other consumers (a web response, a UI)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from callbacks._base import Token, item_of, token_text, usage_of

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


class QueueCallbackHandler(AsyncCallbackHandler):
    """Put a :class:`StreamEvent` on ``queue`` for each start, token, end and error.

    Args:
        queue: the consumer's queue; unbounded queues never block the model call,
            a bounded one applies back-pressure to it.
    """

    def __init__(self, queue: asyncio.Queue[StreamEvent]) -> None:
        self.queue = queue
        self._items: dict[UUID, str | None] = {}

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Emit ``start``."""
        self._items[run_id] = item_of(metadata)
        await self.queue.put(StreamEvent("start", run_id, self._items[run_id]))

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``token``."""
        await self.queue.put(
            StreamEvent("token", run_id, self._items.get(run_id), token_text(token))
        )

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``end`` with the call's token usage."""
        item = self._items.pop(run_id, None)
        await self.queue.put(StreamEvent("end", run_id, item, usage=usage_of(response)))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Emit ``error``."""
        item = self._items.pop(run_id, None)
        text = f"{type(error).__name__}: {error}"
        await self.queue.put(StreamEvent("error", run_id, item, text))
