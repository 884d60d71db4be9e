"""The model calls of one item: start, first token, usage, as the item's record needs them.

A handler made for one item only, so it tracks no chains: LangChain skips its
chain, retriever and agent events (``ignore_*``), which a run of thousands of
items would otherwise dispatch for every step of every chain.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from lc_async_pipelines.callbacks.base import Token, token_text, usage_of
from lc_async_pipelines.runner.notes import NOTE_EVENT, add_note

_USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens")


class ItemCalls(AsyncCallbackHandler):
    """Count one item's model calls, their summed usage (tokens) and the first call's TTFT.

    It also keeps the chain's notes about the item (:attr:`notes`).

    Clock: ``time.perf_counter`` (seconds). Calls still open when the item
    ends (cancelled by its deadline) count as calls, with no usage.
    """

    run_inline = True  # dict updates only: no task per event
    wants_tokens = False  # it times tokens when a call streams; it is no reason to stream
    ignore_chain = True
    ignore_retriever = True
    ignore_agent = True

    def __init__(self) -> None:
        self.notes: dict[str, Any] = {}  # the chain's notes (NOTE_EVENT), for the record
        self.calls = 0
        self._usage = dict.fromkeys(_USAGE_KEYS, 0)
        self._open: dict[UUID, float] = {}
        self._ttft_s: float | None = None
        self._first_call: UUID | None = None
        self._tiers: dict[str, None] = {}  # ordered set

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """Start the call's clock."""
        self._start(run_id)

    async def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """Start a (non-chat) LLM call's clock."""
        self._start(run_id)

    async def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Merge a :data:`~lc_async_pipelines.runner.notes.NOTE_EVENT` into :attr:`notes`.

        Here rather than in a handler of its own: every handler of an item is
        visited for every event of its calls, each token included.
        """
        if name == NOTE_EVENT:
            add_note(self.notes, data)

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Stamp the TTFT of the first call that streams."""
        if self._ttft_s is None and run_id in self._open and token_text(token):
            self._ttft_s = time.perf_counter() - self._open[run_id]

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the call and add its usage."""
        if self._open.pop(run_id, None) is not None:
            self.calls += 1
            for key, value in usage_of(response).items():
                self._usage[key] = self._usage.get(key, 0) + value
            for generations in response.generations:
                for generation in generations:
                    self._note_tier(getattr(generation, "message", None))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the failed call."""
        if self._open.pop(run_id, None) is not None:
            self.calls += 1

    def _note_tier(self, message: Any) -> None:
        metadata = getattr(message, "response_metadata", None)
        tier = metadata.get("service_tier") if isinstance(metadata, dict) else None
        if isinstance(tier, str) and tier:
            self._tiers[tier] = None

    def _start(self, run_id: UUID) -> None:
        self._open[run_id] = time.perf_counter()

    def usage(self) -> dict[str, int]:
        """Return input, output and total tokens summed over the item's calls."""
        return dict(self._usage)

    def count(self) -> int:
        """Return the calls made, those still open included."""
        return self.calls + len(self._open)

    def service_tier(self) -> str | None:
        """Return the tiers that answered (``response_metadata["service_tier"]``), joined by ",".

        In the order first seen (``"flex"``; ``"flex,default"`` when some calls
        went standard); None when no reply named one.
        """
        return ",".join(self._tiers) or None

    def ttft_s(self) -> float | None:
        """Return the seconds from the start of the first call that streamed to its first token."""
        return self._ttft_s
