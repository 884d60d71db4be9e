"""A chat model behind a budget: :func:`with_budget` and the :class:`BudgetedChatModel` it returns.

:class:`BudgetedChatModel` is a LangChain chat model (``BaseChatModel``) that
sends each request through the chat models it wraps: the primary, then its
fallbacks. Every request draws from the run's
:class:`~lc_async_pipelines.runner.limits.budget.RateBudget`, is retried on its
own under a :class:`~lc_async_pipelines.runner.RetryPolicy`, and has each
failed attempt (a fallback's too) logged in the current item's history. As a
chat model it streams through ``astream`` and ``astream_events``, binds
tools, takes ``with_structured_output`` and ``with_fallbacks``, and reports
one LangChain run per call to the callback handlers, with the reply's usage.

A call streams only when someone listens: through ``astream`` or
``astream_events``, or when a callback handler asks for tokens
(:func:`~lc_async_pipelines.callbacks.asks_for_tokens`). Otherwise it is one
plain request: a streamed reply costs about twice the client CPU of a plain one
(``benchmarks/overhead.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableLambda,
    RunnableWithFallbacks,
)
from pydantic import PrivateAttr

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.callbacks import asks_for_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import _history as history
from lc_async_pipelines.runner._attach import bound_max_tokens, map_chat_models, update_chat_models
from lc_async_pipelines.runner.limits.budget import (
    BudgetRateLimiter,
    CallTicket,
    RateBudget,
    charged_call,
)
from lc_async_pipelines.runner.retry import RetryPolicy, is_transient

__all__ = ["BudgetedChatModel", "govern", "with_budget"]

# The wrapped models report to no handler: the wrapper's own run is the call
# handlers see (one run, one usage), so nothing is counted twice. An empty
# list, not None: None would let the surrounding chain's callbacks in.
_QUIET: RunnableConfig = {"callbacks": []}

# The history entries of the model call running in this task (see _retrying).
_CALL_ENTRIES: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "pipelines_call_entries", default=None
)


_ModelAttempt = Callable[
    [Runnable[Any, Any], list[BaseMessage], list[str] | None, dict[str, Any]], Awaitable[Any]
]


def _total_tokens(message: Any) -> int | None:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage["total_tokens"]) if "total_tokens" in usage else None


def _headers(message: Any) -> dict[str, str] | None:
    metadata = getattr(message, "response_metadata", None) or {}
    found = metadata.get("headers")
    return dict(found) if found else None


def _model_name(model: Runnable[Any, Any]) -> str | None:
    while isinstance(model, RunnableBinding):
        model = model.bound
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return str(name) if name else None


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    """A model that cannot stream answers ``astream`` with one whole ``AIMessage``: as a chunk."""
    if isinstance(message, AIMessageChunk):
        return message
    fields = {k: v for k, v in message.model_dump().items() if k != "type"}
    return AIMessageChunk(**fields)


def _unbound(runnable: Runnable[Any, Any]) -> tuple[BaseChatModel, dict[str, Any]]:
    """The chat model inside a (maybe nested) binding, and the keyword arguments bound to it.

    Called directly with a config of its own: a ``RunnableBinding`` would
    merge in the surrounding chain's callbacks (``merge_configs`` reads the
    context's config), and the wrapped model's run would be reported twice.
    """
    model = runnable
    while isinstance(model, RunnableBinding):
        model = model.bound
    if not isinstance(model, BaseChatModel):
        msg = f"expected a chat model, optionally bound, got {type(runnable).__name__}"
        raise TypeError(msg)
    return model, _binding_kwargs(runnable)


def _binding_kwargs(runnable: Runnable[Any, Any]) -> dict[str, Any]:
    """The keyword arguments a (maybe nested) ``RunnableBinding`` sends with each call."""
    if not isinstance(runnable, RunnableBinding):
        return {}
    return {**_binding_kwargs(runnable.bound), **runnable.kwargs}


class BudgetedChatModel(BaseChatModel):
    """A chat model whose every request draws from a :class:`RateBudget` (see :func:`with_budget`).

    Invoked, it is the primary model: messages in, ``AIMessage`` out. A
    request that fails goes to the fallbacks in order (each request charged
    to the budget, each failure in the item's history, a 429 pausing the whole
    budget); with a retry policy, a call whose models all failed with a
    transient error is tried again after a backoff. A stream is retried or
    sent to a fallback only until its first chunk arrives: after that, a
    failure ends the call.

    Build it with :func:`with_budget`. Only the async API works (``ainvoke``,
    ``astream``, ``abatch``): a budget lives on an event loop.
    """

    cache: Any = False  # the wrapped models hold the cache: a hit there costs no budget
    _models: list[Runnable[LanguageModelInput, BaseMessage]] = PrivateAttr()
    _targets: list[tuple[BaseChatModel, dict[str, Any]]] = PrivateAttr()
    _budget: RateBudget = PrivateAttr()
    _retry: RetryPolicy | None = PrivateAttr(default=None)

    def __init__(
        self,
        models: Sequence[ChatModel],
        budget: RateBudget,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap ``models`` (the primary first, then its fallbacks) to draw from ``budget``.

        Each gets a :class:`BudgetRateLimiter` (a copy of it does), so a call
        answered by its LLM cache spends no budget. ``retry`` retries each call
        on its own (None: a call fails at its first error).
        """
        super().__init__(**kwargs)
        if not models:
            raise TypeError("BudgetedChatModel needs at least one chat model")
        limiter = BudgetRateLimiter(budget)
        self._models = [update_chat_models(m, rate_limiter=limiter) for m in models]
        self._targets = [_unbound(m) for m in self._models]
        self._budget = budget
        self._retry = retry

    @property
    def budget(self) -> RateBudget:
        """The budget every request draws from."""
        return self._budget

    @property
    def retry(self) -> RetryPolicy | None:
        """The per-call retry policy (None: no retries)."""
        return self._retry

    @property
    def models(self) -> list[Runnable[LanguageModelInput, BaseMessage]]:
        """The wrapped models, the primary first (each with the budget as its rate limiter)."""
        return list(self._models)

    @property
    def model_name(self) -> str | None:
        """The primary model's name (``gpt-4o-mini``), as the provider knows it."""
        return _model_name(self._models[0])

    @property
    def _llm_type(self) -> str:
        return "budgeted-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        fallbacks = [_model_name(m) for m in self._models[1:]]
        return {"model_name": self.model_name, "fallbacks": fallbacks}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_model_type="chat", ls_provider="budgeted")
        if self.model_name:
            params["ls_model_name"] = self.model_name
        if stop:
            params["ls_stop"] = stop
        return params

    def _charge(self, model: Runnable[Any, Any], kwargs: dict[str, Any]) -> int:
        """Output tokens to charge a request of ``model`` up front: the call's max_tokens."""
        asked = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
        if asked:
            return int(asked)
        return bound_max_tokens(model) or self._budget.default_max_tokens

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        msg = "a budgeted chat model is async-only: call it with ainvoke/abatch/astream"
        raise RuntimeError(msg)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if run_manager is not None and any(asks_for_tokens(h) for h in run_manager.handlers):
            return await agenerate_from_stream(
                self._emitting(self._astream(messages, stop, **kwargs), run_manager)
            )
        message = await self._with_retries(self._invoke_any, messages, stop, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _emitting(
        self,
        chunks: AsyncIterator[ChatGenerationChunk],
        run_manager: AsyncCallbackManagerForLLMRun,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in chunks:
            await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream, first = await self._with_retries(self._open_any, messages, stop, kwargs)
        try:
            yield ChatGenerationChunk(message=first)
            async for chunk in stream:
                yield ChatGenerationChunk(message=chunk)
        finally:
            await stream.aclose()

    async def _invoke_any(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> BaseMessage:
        """One attempt: the primary, then each fallback, until one answers."""
        message: BaseMessage = await self._each_model(self._invoke_one, messages, stop, kwargs)
        return message

    async def _open_any(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[AsyncIterator[AIMessageChunk], AIMessageChunk]:
        """One attempt to open a stream: the primary, then each fallback, until one sends."""
        opened: tuple[AsyncIterator[AIMessageChunk], AIMessageChunk] = await self._each_model(
            self._open_one, messages, stop, kwargs
        )
        return opened

    async def _each_model(
        self,
        attempt: _ModelAttempt,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> Any:
        """Try ``attempt`` on the primary, then each fallback; all failing, raise the first error.

        Every failure goes into the item's history (naming the model when
        there are fallbacks), as LangChain's ``with_fallbacks`` would hide it.
        """
        first_error: Exception | None = None
        for model, (chat, bound) in zip(self._models, self._targets, strict=True):
            began = time.perf_counter()
            try:
                return await attempt(chat, messages, stop, {**bound, **kwargs})
            except Exception as exc:
                first_error = first_error or exc
                # with fallbacks, each failure names its model (None when it has no name)
                _log_failure(exc, began, {"model": _model_name(model)} if self._models[1:] else {})
        assert first_error is not None
        raise first_error

    async def _invoke_one(
        self,
        model: Runnable[Any, Any],
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> BaseMessage:
        began = time.perf_counter()
        async with charged_call(self._budget, messages, self._charge(model, kwargs)) as ticket:
            message: BaseMessage = await model.ainvoke(messages, _QUIET, stop=stop, **kwargs)
            ticket.used = _total_tokens(message)
            ticket.headers = _headers(message)
        _note_queue(ticket, began)
        return message

    async def _open_one(
        self,
        model: Runnable[Any, Any],
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> tuple[AsyncIterator[AIMessageChunk], AIMessageChunk]:
        """Start one request's stream; return it with its first chunk, or raise its error.

        The request runs in a task of its own that hands its chunks over a
        queue: the budget's ticket lives in a context variable, and LangChain
        may pull a stream's chunks from other contexts than the one that
        started it (``RunnableSequence.astream``).
        """
        chunks: asyncio.Queue[AIMessageChunk | BaseException | None] = asyncio.Queue()
        producer = asyncio.create_task(self._stream_one(model, messages, stop, kwargs, chunks))
        try:
            first = await chunks.get()
        except BaseException:
            producer.cancel()
            raise
        if isinstance(first, BaseException):
            raise first
        if first is None:
            msg = "No generations found in stream"  # langchain-core's words: a transient error
            raise ValueError(msg)
        return _drained(chunks, producer), first

    async def _stream_one(
        self,
        model: Runnable[Any, Any],
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        chunks: asyncio.Queue[AIMessageChunk | BaseException | None],
    ) -> None:
        began = time.perf_counter()
        try:
            charge = self._charge(model, kwargs)
            async with charged_call(self._budget, messages, charge) as ticket:
                noted = False
                async for chunk in model.astream(messages, _QUIET, stop=stop, **kwargs):
                    if not noted:
                        noted = True
                        _note_queue(ticket, began)
                    ticket.used = _total_tokens(chunk) or ticket.used
                    ticket.headers = _headers(chunk) or ticket.headers
                    chunks.put_nowait(_as_chunk(chunk))
        except Exception as exc:  # handed to the reader, who raises it
            chunks.put_nowait(exc)
            return
        chunks.put_nowait(None)

    async def _with_retries(
        self,
        attempt: Callable[[list[BaseMessage], list[str] | None, dict[str, Any]], Awaitable[Any]],
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> Any:
        """Run one call's attempts under the retry policy (failures are logged by each attempt)."""
        return await _retrying(self._retry, lambda: attempt(messages, stop, kwargs))

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` the way the primary model does, keeping this model (and its budget).

        The primary's ``bind_tools`` formats the tools (OpenAI's function
        schema for ``ChatOpenAI``); the same keyword arguments are then bound
        to this model, so every request of an agent's loop draws from the
        budget, is retried and falls back as plain calls do.

        Returns:
            ``Runnable[LanguageModelInput, AIMessage]`` whose replies may hold ``tool_calls``.

        Raises:
            NotImplementedError: the primary model cannot call tools.
        """
        method = getattr(self._models[0], "bind_tools", None)
        if not callable(method):
            msg = f"{type(self._models[0]).__name__} has no bind_tools"
            raise NotImplementedError(msg)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = method(tools, **kwargs)
        return self.bind(**_binding_kwargs(bound))

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Return the wrapped models' ``with_structured_output(schema, **kwargs)``, budgeted.

        The primary's structured output (for ``ChatOpenAI``, OpenAI's
        structured outputs or llama-server's JSON-schema decoding), with the
        fallbacks' as its fallbacks; each request draws from the budget and
        the call is retried on its own.

        Returns:
            ``Runnable[LanguageModelInput, dict | BaseModel]`` (or, with
            ``include_raw``, ``{"raw", "parsed", "parsing_error"}``).

        Raises:
            NotImplementedError: the wrapped model has no structured output.
            OutputParserException: on invocation, without ``include_raw``, the
                reply did not parse.
        """
        structured = [self._structured(m, schema, kwargs) for m in self._models]
        max_tokens = int(kwargs.get("max_tokens") or self._charge(self._models[0], {}))
        budget, retry = self._budget, self._retry

        async def call(value: LanguageModelInput, config: RunnableConfig) -> Any:
            async def attempt(runnable: Runnable[Any, Any]) -> Any:
                async with charged_call(budget, value, max_tokens) as ticket:
                    raw: dict[str, Any] = await runnable.ainvoke(value, config)
                    ticket.used = _total_tokens(raw.get("raw"))
                    ticket.headers = _headers(raw.get("raw"))
                    return raw

            result = await _structured_attempts(structured, attempt, retry)
            if include_raw:
                return result
            error = result.get("parsing_error")
            if isinstance(error, BaseException):
                raise error
            return result.get("parsed")

        return RunnableLambda(call, name="budgeted_structured_output")

    @staticmethod
    def _structured(
        model: Runnable[Any, Any], schema: dict[str, Any] | type, kwargs: dict[str, Any]
    ) -> Runnable[Any, Any]:
        method = getattr(model, "with_structured_output", None)
        if not callable(method):
            msg = f"{type(model).__name__} has no with_structured_output"
            raise NotImplementedError(msg)
        structured: Runnable[Any, Any] = method(schema, include_raw=True, **kwargs)
        return structured


async def _structured_attempts(
    structured: list[Runnable[Any, Any]],
    attempt: Callable[[Runnable[Any, Any]], Awaitable[dict[str, Any]]],
    retry: RetryPolicy | None,
) -> dict[str, Any]:
    """Retry a structured call; each attempt tries the primary, then the fallbacks."""

    async def each() -> dict[str, Any]:
        first_error: Exception | None = None
        for runnable in structured:
            began = time.perf_counter()
            try:
                return await attempt(runnable)
            except Exception as exc:
                first_error = first_error or exc
                _log_failure(exc, began, {})
        assert first_error is not None
        raise first_error

    result: dict[str, Any] = await _retrying(retry, each)
    return result


def _log_failure(exc: BaseException, began: float, extra: dict[str, Any]) -> None:
    """Log one failed request into the item's history (outside the runner: nowhere)."""
    log = history.current()
    if log is None:
        return
    entry = log.add(exc, stage="call", seconds=time.perf_counter() - began)
    entry.update(extra)
    call_entries = _CALL_ENTRIES.get()
    if call_entries is not None:
        call_entries.append(entry)


async def _retrying(retry: RetryPolicy | None, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``attempt`` under ``retry``; the backoff before each retry goes into its last entry."""
    log = history.current()
    mine: list[dict[str, Any]] = []  # this call's entries: an item's calls may run at once
    token = _CALL_ENTRIES.set(mine)

    def on_retry(exc: BaseException, wait: float) -> None:
        if mine:
            mine[-1]["wait_s"] = round(wait, 3)

    policy = retry or RetryPolicy(max_retries=0)
    try:
        async for attempt_state in policy.retrying(on_retry=on_retry):
            with attempt_state:
                return await attempt()
    except Exception as exc:
        if log is not None and retry is not None and is_transient(exc):
            log.exhausted = True  # the item must not repeat its calls that succeeded
        raise
    finally:
        _CALL_ENTRIES.reset(token)
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


async def _drained(
    chunks: asyncio.Queue[AIMessageChunk | BaseException | None], producer: asyncio.Task[None]
) -> AsyncIterator[AIMessageChunk]:
    """Yield the chunks ``producer`` puts on ``chunks`` until its end; stop it if left early."""
    try:
        while (chunk := await chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


def _note_queue(ticket: CallTicket, began: float) -> None:
    """Tell the item's history how long this request waited for the budget."""
    log = history.current()
    if log is not None and ticket.requests:
        log.note_request(ticket.queued_s, sent_at=began + ticket.queued_s)


def with_budget(
    llm: ChatModel,
    budget: RateBudget,
    *,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[ChatModel] = (),
) -> BudgetedChatModel:
    """Wrap ``llm`` so that every request it sends draws from ``budget``.

    ``llm`` is a chat model, optionally bound (``.bind(max_tokens=...)``);
    one with fallbacks (``.with_fallbacks([...])``) is unpacked into the
    primary and its ``fallbacks``, which the wrapper then tries itself, so a
    failed request of the primary is logged and a 429 pauses the budget. A
    copy of each model gets a :class:`BudgetRateLimiter`, so calls answered
    by its LLM cache skip the budget. Bound keyword arguments reach the model
    unchanged.

    With ``retry``, each model call is retried on its own (a failed
    map-reduce chunk does not repeat the chunks that succeeded); without, a
    call fails at its first error and the caller decides.

    Returns:
        A :class:`BudgetedChatModel`: a ``BaseChatModel``, usable wherever
        ``llm`` was, that streams through ``astream``.

    Raises:
        TypeError: ``llm`` holds no chat model.
    """
    models: list[ChatModel] = [llm]
    if isinstance(llm, RunnableWithFallbacks):
        models = [llm.runnable, *llm.fallbacks]
    return BudgetedChatModel([*models, *fallbacks], budget, retry)


def govern(
    runnable: Runnable[Any, Any], budget: RateBudget, *, retry: RetryPolicy | None = None
) -> Runnable[Any, Any]:
    """Put every chat model inside a ready ``Runnable`` under ``budget``, copying it.

    For a pipeline that holds its own model (``module:READY``): each chat
    model found in its LCEL structure (sequences, parallels, bindings,
    fallbacks) is wrapped by :func:`with_budget`, so the run's RPM, TPM,
    calls in flight and per-call retries reach it.

    Raises:
        ConfigurationError: no chat model is reachable (one inside a
            ``RunnableLambda`` or a custom class cannot be found): the run's
            limits could not hold, so it is refused rather than run unlimited.
    """
    if isinstance(runnable, BudgetedChatModel):
        return runnable
    governed, found = map_chat_models(runnable, lambda m: with_budget(m, budget, retry=retry))
    if not found:
        msg = (
            "the ready Runnable's chat model cannot be reached (inside a function or a custom "
            "class), so the run's budget and retries could not hold; give a factory that "
            "takes the model (package.module:factory) instead"
        )
        raise ConfigurationError(msg)
    return governed
