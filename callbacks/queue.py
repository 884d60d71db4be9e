"""Push streamed tokens onto an ``asyncio.Queue`` for other consumers (a web response, a UI)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.callbacks.base import TaggedCallbackHandler, usage_of

__all__ = ["QueueCallbackHandler", "StreamEvent"]


@dataclass(frozen=True)
class StreamEvent:
    """One event of a model call.

    Attributes:
        kind: ``"start"``, ``"token"``, ``"end"`` or ``"error"``.
        run_id: LangChain run id of the model call.
        item_id: the runner's item id (``config["metadata"]["item_id"]``), else None.
        text: the token (``"token"``), or ``"ErrorType: message"`` (``"error"``).
        usage: input/output/total tokens (``"end"``).
        tag: which item or invocation the call belongs to: ``item_id`` when set,
            else ``"call-N"``, shared by every model call of one top-level
            invocation (see :class:`~lc_async_pipelines.callbacks.base.TaggedCallbackHandler`).
    """

    kind: Literal["start", "token", "end", "error"]
    run_id: UUID
    item_id: str | None = None
    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    tag: str = ""


class QueueCallbackHandler(TaggedCallbackHandler):
    """Put a :class:`StreamEvent` on ``queue`` for each start, token, end and error.

    Args:
        queue: the consumer's queue; unbounded queues never block the model call,
            a bounded one applies back-pressure to it. The handler never puts
            ``None``, so a consumer may use it as its own end marker.

    It asks for tokens (``wants_tokens``): the session's model streams the calls it sees.
    """

    wants_tokens = True

    def __init__(
        self, queue: asyncio.Queue[StreamEvent] | asyncio.Queue[StreamEvent | None]
    ) -> None:
        super().__init__()
        self.queue = queue

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        """Emit ``start``."""
        await self.queue.put(StreamEvent("start", run_id, self.item(run_id), tag=tag))

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        """Emit ``token``."""
        await self.queue.put(StreamEvent("token", run_id, self.item(run_id), text, tag=tag))

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        """Emit ``end`` with the call's token usage."""
        usage = usage_of(response)
        await self.queue.put(StreamEvent("end", run_id, self.item(run_id), usage=usage, tag=tag))

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        """Emit ``error``."""
        text = f"{type(error).__name__}: {error_text(error)}"
        await self.queue.put(StreamEvent("error", run_id, self.item(run_id), text, tag=tag))
