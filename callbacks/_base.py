"""Shared bits of the handlers: which item a model call belongs to, and its usage."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

ITEM_KEY = "item_id"


def item_of(metadata: dict[str, Any] | None) -> str | None:
    """Return the item id that the runner put in ``config["metadata"]``, if any."""
    value = (metadata or {}).get(ITEM_KEY)
    return None if value is None else str(value)


def usage_of(response: LLMResult) -> dict[str, int]:
    """Return ``{"input_tokens", "output_tokens", "total_tokens"}`` summed over a response."""
    totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    for generations in response.generations:
        for gen in generations:
            meta = (
                getattr(gen.message, "usage_metadata", None)
                if isinstance(gen, ChatGeneration)
                else None
            )
            if meta:
                for key in totals:
                    totals[key] += int(meta.get(key, 0))
    return totals


Token = str | list[str | dict[str, Any]]


def token_text(token: Token) -> str:
    """Return the text of a streamed token (a string, or content blocks in LangChain 1.x)."""
    if isinstance(token, str):
        return token
    return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in token)


class ItemAwareHandler(AsyncCallbackHandler):
    """Remembers which item each chat-model call belongs to, then calls :meth:`on_call_start`.

    ``on_llm_new_token`` and ``on_llm_end`` only get the run id, so the item
    (``config["metadata"]["item_id"]``) is looked up from the call's start.
    """

    def __init__(self) -> None:
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
        """Record the call's item, then hand over to :meth:`on_call_start`."""
        self._items[run_id] = item_of(metadata)
        await self.on_call_start(run_id, self._items[run_id])

    async def on_call_start(self, run_id: UUID, item: str | None) -> None:
        """Run when a chat-model call starts; ``item`` is None outside the runner."""

    def item(self, run_id: UUID) -> str | None:
        """Return the item of a call in progress."""
        return self._items.get(run_id)

    def forget(self, run_id: UUID) -> str | None:
        """Drop a finished call and return its item."""
        return self._items.pop(run_id, None)
