"""Shared bits of the handlers: which item a model call belongs to, and its usage."""

from __future__ import annotations

from typing import Any

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
