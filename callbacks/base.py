"""A handler base that tags every model call with the item or invocation it belongs to.

Tokens of concurrent calls reach a plain ``AsyncCallbackHandler`` mixed together,
each with only its own ``run_id``. :class:`TaggedCallbackHandler` gives every
model call a *tag*:

- under the runner, the item id it puts in ``config["metadata"]["item_id"]``;
- otherwise, one tag per top-level invocation (one ``ainvoke``, or one input of an
  ``abatch``): ``"call-1"``, ``"call-2"``, ... counted per handler in the order the
  invocations start. Every model call made under that invocation, however deeply
  nested (a map-reduce's inner ``abatch`` included), carries the same tag.

The top-level invocation is found by walking ``parent_run_id`` links from the
model call up to a run with no parent, so the handler follows chain, tool and
retriever runs as well as model calls and drops each run when it ends.

LangChain's run ids are UUIDv7: their first hex digits are a timestamp, the same
for every run started within about a minute, so they make poor short tags.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, final
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.callbacks.base import LLMManagerMixin
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

__all__ = [
    "ITEM_KEY",
    "TaggedCallbackHandler",
    "Token",
    "asks_for_tokens",
    "item_of",
    "token_text",
    "usage_of",
]

ITEM_KEY: Final = "item_id"
"""The ``config["metadata"]`` key that holds the runner's item id."""

Token = str | list[str | dict[str, Any]]
"""What ``on_llm_new_token`` receives: a string, or content blocks in LangChain 1.x."""


_QUIET_TOKEN_HOOKS = (LLMManagerMixin.on_llm_new_token, AsyncCallbackHandler.on_llm_new_token)


def asks_for_tokens(handler: BaseCallbackHandler) -> bool:
    """True when ``handler`` wants a model call's tokens as they come, so the call should stream.

    A model call of the session's model streams only when someone listens
    (:class:`~lc_async_pipelines.runner.BudgetedChatModel`): a plain request
    costs about half the client CPU of a streamed one. A handler says so with
    a boolean ``wants_tokens`` attribute (:class:`TaggedCallbackHandler`
    subclasses: False unless set; :class:`TerminalStreamHandler` and
    :class:`QueueCallbackHandler`: True). A handler without one asks when it
    overrides ``on_llm_new_token`` (LangChain's ``StreamingStdOutCallbackHandler``
    does), except LangChain's tracers, which record tokens only of calls that
    stream anyway.
    """
    wants = getattr(handler, "wants_tokens", None)
    if isinstance(wants, bool):
        return wants
    if isinstance(handler, BaseTracer | AsyncBaseTracer):
        return False
    return type(handler).on_llm_new_token not in _QUIET_TOKEN_HOOKS


def item_of(metadata: dict[str, Any] | None) -> str | None:
    """Return the item id the runner put in a run's metadata.

    Args:
        metadata: the ``metadata`` LangChain passes to a start callback (it holds
            ``config["metadata"]``, inherited by every child run), or None.

    Returns:
        ``str(metadata["item_id"])``, or None when the key is absent or None.
    """
    value = (metadata or {}).get(ITEM_KEY)
    return None if value is None else str(value)


def usage_of(response: LLMResult) -> dict[str, int]:
    """Sum the token usage reported in a model response.

    Args:
        response: what ``on_llm_end`` receives.

    Returns:
        ``{"input_tokens": ..., "output_tokens": ..., "total_tokens": ...}`` summed
        over the ``usage_metadata`` of every chat generation; zeros when the
        server reported none.
    """
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


def token_text(token: Token) -> str:
    """Return the text of a streamed token.

    Args:
        token: what ``on_llm_new_token`` receives: a string, or a list of content
            blocks (strings, or dicts whose ``"text"`` holds text).

    Returns:
        The token's text; blocks without text (tool-call chunks, images) give "".
    """
    if isinstance(token, str):
        return token
    return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in token)


@dataclass
class _Root:
    """A top-level invocation: its tag (given on first need) and its runs in progress."""

    tag: str | None = None
    runs: set[UUID] = field(default_factory=set)


@dataclass(frozen=True)
class _Run:
    """A run in progress: its top-level run, item id, tag, and whether it is a model call."""

    root: UUID
    item: str | None
    is_call: bool
    tag: str  # known at start: looked up once per token, so kept, not derived


class TaggedCallbackHandler(AsyncCallbackHandler):
    """Base for handlers that need to know which item or invocation a model call serves.

    Subclasses override the ``on_call_*`` hooks below; the base calls each with
    the call's ``run_id`` and tag, and frees its bookkeeping when the call ends,
    so a handler shared by any number of runs does not grow. To handle a
    LangChain callback directly (``on_llm_new_token`` for its ``chunk``, say),
    override it and ``await super()`` of it; the lookups :meth:`tag`,
    :meth:`item` and :meth:`root_run_id` answer for any run in progress.

    A call's tag is its item id (``config["metadata"]["item_id"]``) when set,
    else ``"call-N"``, N counting this handler's top-level invocations from 1.
    The count is per handler: one handler shared by concurrent invocations is
    what tells them apart.

    Pass the handler in the top-level config (``chain.ainvoke(x, {"callbacks":
    [handler]})``), so that it sees every run: attached lower down (to a model
    with ``with_config``), its top-level run is the first run it did not see,
    so calls of one invocation share a tag only while one of them is open.

    LangChain reports nothing for a model call cancelled in flight (a deadline,
    a cancelled task); the base closes such calls with :meth:`on_call_error`
    when their top-level run ends. A model called on its own (no chain around
    it) and cancelled is never reported, and stays tracked.

    Handler callbacks run on the event loop, one event at a time per run, so no
    lock is needed.
    """

    wants_tokens: ClassVar[bool] = False
    """Set True in a subclass that needs tokens as they come (:func:`asks_for_tokens`)."""

    run_inline: bool = True
    """Awaited in place, not wrapped in a task per event (LangChain's ``ahandle_event``).

    The model's stream waits for its handlers either way; a task per token per
    handler only adds CPU. A subclass whose hooks block on slow I/O can set it
    False to overlap with the run's other handlers.
    """

    def __init__(self) -> None:
        self._runs: dict[UUID, _Run] = {}
        self._roots: dict[UUID, _Root] = {}
        self._counter = itertools.count(1)

    # The tag needs every run's start and end: these events cannot be ignored.

    @property
    @final
    def ignore_chain(self) -> bool:
        """Return False: chain runs link model calls to their invocation."""
        return False

    @property
    @final
    def ignore_llm(self) -> bool:
        """Return False: the handler tags model calls."""
        return False

    @property
    @final
    def ignore_chat_model(self) -> bool:
        """Return False: the handler tags model calls."""
        return False

    @property
    @final
    def ignore_agent(self) -> bool:
        """Return False: tool runs (reported under this flag) link model calls too."""
        return False

    @property
    @final
    def ignore_retriever(self) -> bool:
        """Return False: retriever runs link model calls too."""
        return False

    # Hooks for subclasses.

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        """Run when a model call starts. Does nothing unless overridden.

        Args:
            run_id: the call's LangChain run id; later events of the call carry it.
            tag: the call's item id under the runner, else its invocation's
                ``"call-N"``.
        """

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        """Run for each token a streaming model call produces. Does nothing unless overridden.

        Args:
            run_id: the call's run id.
            tag: the call's tag, as given to :meth:`on_call_start`.
            text: the token's text (see :func:`token_text`); may be "".
        """

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        """Run when a model call ends with a response. Does nothing unless overridden.

        The call is forgotten after this returns (or raises).

        Args:
            run_id: the call's run id.
            tag: the call's tag.
            response: the model's response; :func:`usage_of` reads its token usage.
        """

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        """Run when a model call fails. Does nothing unless overridden.

        Also run for a call still open when its top-level run ends (LangChain
        does not report cancelled calls); ``error`` is then the top-level run's
        error, or an ``asyncio.CancelledError`` when that run succeeded. The
        call is forgotten after this returns (or raises).

        Args:
            run_id: the call's run id.
            tag: the call's tag.
            error: the exception the call ended with.
        """

    # Lookups.

    def tag(self, run_id: UUID) -> str | None:
        """Return the tag of a run in progress.

        Args:
            run_id: a model call's run id (or a chain, tool or retriever run's).

        Returns:
            The run's item id when its metadata has one, else its invocation's
            ``"call-N"``; None when the run is unknown or has ended.
        """
        run = self._runs.get(run_id)
        return None if run is None else run.tag

    def item(self, run_id: UUID) -> str | None:
        """Return the runner's item id of a run in progress.

        Args:
            run_id: a run's id.

        Returns:
            ``config["metadata"]["item_id"]`` as a string; None outside the
            runner, or when the run is unknown or has ended.
        """
        run = self._runs.get(run_id)
        return None if run is None else run.item

    def root_run_id(self, run_id: UUID) -> UUID | None:
        """Return the run id of the top-level invocation a run belongs to.

        Args:
            run_id: a run's id.

        Returns:
            The id of its topmost ancestor this handler saw start, or of the first
            ancestor it did not see; ``run_id`` itself for a top-level run; None
            when the run is unknown or has ended.
        """
        run = self._runs.get(run_id)
        return None if run is None else run.root

    @property
    def tracked_runs(self) -> int:
        """Return how many runs (chains, tools, retrievers, model calls) are held now.

        Zero once every run the handler saw has ended.
        """
        return len(self._runs)

    # Bookkeeping.

    def _enter(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        *,
        is_call: bool,
    ) -> str:
        """Track a run that starts; return its tag."""
        parent = None if parent_run_id is None else self._runs.get(parent_run_id)
        if parent is not None:
            root_id = parent.root
        else:  # a top-level run, or one whose parent this handler never saw
            root_id = run_id if parent_run_id is None else parent_run_id
        root = self._roots.setdefault(root_id, _Root())
        root.runs.add(run_id)
        item = item_of(metadata)
        if item is not None:
            tag = item
        else:
            if root.tag is None:  # top-level invocations numbered in the order they start
                root.tag = f"call-{next(self._counter)}"
            tag = root.tag
        self._runs[run_id] = _Run(root_id, item, is_call, tag)
        return tag

    def _leave(self, run_id: UUID) -> None:
        """Forget a run, and its top-level run's entry once nothing under it is left."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        root = self._roots.get(run.root)
        if root is not None:
            root.runs.discard(run_id)
            if not root.runs:
                del self._roots[run.root]

    async def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        """Forget a run that ended; a top-level one closes the calls left open under it."""
        run = self._runs.get(run_id)
        if run is None or run.root != run_id:
            self._leave(run_id)
            return
        try:
            root = self._roots.get(run_id)
            for orphan in [] if root is None else sorted(root.runs - {run_id}):
                held = self._runs.get(orphan)
                if held is not None and held.is_call:
                    reason = error or asyncio.CancelledError("its top-level run ended first")
                    await self._close_call(orphan, error=reason)
                else:
                    self._leave(orphan)
        finally:  # a hook that raised still leaves nothing behind
            for orphan in list(self._roots.get(run_id, _Root()).runs):
                self._leave(orphan)

    async def _close_call(
        self,
        run_id: UUID,
        *,
        response: LLMResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Run the end or error hook of a call, then forget it (whatever the hook does)."""
        tag = self.tag(run_id)
        try:
            if tag is None:
                return
            if error is not None:
                await self.on_call_error(run_id, tag, error)
            elif response is not None:
                await self.on_call_end(run_id, tag, response)
        finally:
            await self._end(run_id, error)

    # LangChain callbacks: model calls.

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Track the call, then run :meth:`on_call_start` with its tag."""
        await self.on_call_start(run_id, self._enter(run_id, parent_run_id, metadata, is_call=True))

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Track a (non-chat) LLM call, then run :meth:`on_call_start` with its tag."""
        await self.on_call_start(run_id, self._enter(run_id, parent_run_id, metadata, is_call=True))

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Run :meth:`on_call_token` with the token's text (calls it tracks only)."""
        tag = self.tag(run_id)
        if tag is not None:
            await self.on_call_token(run_id, tag, token_text(token))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Run :meth:`on_call_end`, then forget the call."""
        await self._close_call(run_id, response=response)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Run :meth:`on_call_error`, then forget the call."""
        await self._close_call(run_id, error=error)

    # LangChain callbacks: the runs around model calls.

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Track a chain run."""
        self._enter(run_id, parent_run_id, metadata, is_call=False)

    async def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a chain run (and, for a top-level one, calls left open under it)."""
        await self._end(run_id)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed chain run (and, for a top-level one, calls left open under it)."""
        await self._end(run_id, error)

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Track a tool run."""
        self._enter(run_id, parent_run_id, metadata, is_call=False)

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a tool run."""
        await self._end(run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed tool run."""
        await self._end(run_id, error)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Track a retriever run."""
        self._enter(run_id, parent_run_id, metadata, is_call=False)

    async def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """Forget a retriever run."""
        await self._end(run_id)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """Forget a failed retriever run."""
        await self._end(run_id, error)
