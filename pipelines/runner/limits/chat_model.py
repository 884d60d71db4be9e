"""A chat model behind a budget: :func:`with_budget` and the :class:`BudgetedChatModel` it makes.

:func:`with_budget` returns the model it is given, budgeted: an instance of a
subclass of the model's own class (``BudgetedChatOpenAI`` for a
``ChatOpenAI``) whose every request draws from the run's
:class:`~lc_async_pipelines.runner.limits.budget.RateBudget`, is retried on its
own under a :class:`~lc_async_pipelines.runner.RetryPolicy`, falls back to
other models, and has each failed attempt logged in the current item's
history. Being the provider's class, it keeps all it does: ``astream`` and
``astream_events`` stream, ``bind_tools`` and ``with_structured_output`` bind
to it (so every request of an agent or a structured call is budgeted), its
LLM cache answers before the budget is asked, and handlers see one model run
per call, as for the bare model, at no extra layer's cost.

A call streams only when someone listens: through ``astream`` or
``astream_events``, or when a callback handler asks for tokens
(:func:`~lc_async_pipelines.callbacks.asks_for_tokens`). Otherwise it is one
plain request: a streamed reply costs about twice the client CPU of a plain one
(``benchmarks/overhead.py``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Any, ClassVar, overload

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import (
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableWithFallbacks,
)
from pydantic import PrivateAttr

from lc_async_pipelines import telemetry
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.callbacks import asks_for_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner._attach import bound_max_tokens, map_chat_models
from lc_async_pipelines.runner.limits._chat_calls import (
    _CHARGED,
    _as_chunk,
    _charged,
    _emitting,
    _headers,
    _log_failure,
    _model_name,
    _not_flex_refusal,
    _note_queue,
    _retrying,
    _total_tokens,
    _traced_wait,
)
from lc_async_pipelines.runner.limits.budget import (
    BudgetRateLimiter,
    RateBudget,
    charged_call,
)
from lc_async_pipelines.runner.limits.flex import FlexOptions, flex_call
from lc_async_pipelines.runner.retry import RetryPolicy, is_transient

if TYPE_CHECKING:
    from lc_async_pipelines.telemetry.instruments import ModelCall, Telemetry

__all__ = ["BudgetedChatModel", "govern", "with_budget"]

# A fallback reports to no handler: the budgeted model's own run is the call
# handlers see (one run, one usage). An empty list, not None: None would let
# the surrounding chain's callbacks in.
_QUIET: RunnableConfig = {"callbacks": []}

_Stop = list[str] | None


class BudgetedChatModel(BaseChatModel):
    """A chat model whose every request draws from a :class:`RateBudget` (see :func:`with_budget`).

    Never built directly: :func:`with_budget` makes a subclass of both this
    class and the wrapped model's class, so ``isinstance(llm, ChatOpenAI)``
    and ``isinstance(llm, BudgetedChatModel)`` both hold.

    A request that fails goes to the fallbacks in order (each request charged
    to the budget, each failure in the item's history, a 429 pausing the whole
    budget); with a retry policy, a call whose models all failed with a
    transient error is tried again after a backoff. A stream is retried or
    sent to a fallback only until its first chunk arrives: after that, a
    failure ends the call. Only the async API works (``ainvoke``,
    ``astream``, ``abatch``): a budget lives on an event loop.
    """

    _provider_streams: ClassVar[bool] = True
    _budget: RateBudget = PrivateAttr()
    _retry: RetryPolicy | None = PrivateAttr(default=None)
    _fallbacks: list[ChatModel] = PrivateAttr(default_factory=list)
    _flex: FlexOptions | None = PrivateAttr(default=None)
    _closed: bool = PrivateAttr(default=False)

    @property
    def budget(self) -> RateBudget:
        """The budget every request draws from."""
        return self._budget

    @property
    def retry(self) -> RetryPolicy | None:
        """The per-call retry policy (None: no retries)."""
        return self._retry

    @property
    def fallbacks(self) -> list[ChatModel]:
        """The models tried, in order, when a request to this one fails."""
        return list(self._fallbacks)

    @property
    def flex(self) -> FlexOptions | None:
        """How calls use OpenAI's flex tier (None: they go at the standard tier)."""
        return self._flex

    def with_flex(self, options: FlexOptions | None) -> BudgetedChatModel:
        """Return a copy of this model whose calls go at the flex tier under ``options``.

        The copy shares this model's budget, retry policy and fallbacks (one
        run's RPM and TPM hold across both); ``None`` gives a copy at the
        standard tier. See :func:`~lc_async_pipelines.runner.limits.flex.flex_call`.
        """
        copy = self.model_copy()
        copy._budget = self._budget
        copy._retry = self._retry
        copy._fallbacks = self._fallbacks
        copy._flex = options
        return copy

    def close(self) -> None:
        """Refuse further calls: the session that wired this model has closed.

        Its HTTP client, embedded server, budget store and cache are gone; a
        later call raises :class:`~lc_async_pipelines.errors.ConfigurationError`
        rather than failing somewhere inside them.
        """
        self._closed = True

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # A provider with only a sync API is run in a thread by LangChain's
        # async defaults, from inside a budgeted request: let that through.
        if not _CHARGED.get():
            msg = "a budgeted chat model is async-only: call it with ainvoke/abatch/astream"
            raise RuntimeError(msg)
        # the provider's class, after this one in the MRO, implements it
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)  # type: ignore[safe-super]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if not _CHARGED.get():
            msg = "a budgeted chat model is async-only: call it with ainvoke/abatch/astream"
            raise RuntimeError(msg)
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if run_manager is not None and any(asks_for_tokens(h) for h in run_manager.handlers):
            return await self._listened(messages, stop, run_manager, kwargs)

        def generate() -> Awaitable[ChatResult]:
            return self._tiered(
                lambda kw, retry_if: _retrying(
                    self._retry,
                    lambda: self._each_model(self._plain, messages, stop, kw),
                    retry_if,
                ),
                kwargs,
            )

        tel = telemetry.current()
        if tel is None:
            return await generate()
        call = self._traced_call(tel, messages, kwargs)
        try:
            with call.current():
                result = await generate()
        except BaseException as exc:
            call.fail(exc)
            raise
        # the model's name is in llm_output until langchain-core moves it into the metadata
        generation = result.generations[0]
        info = {**(result.llm_output or {}), **(generation.generation_info or {})}
        call.finish(generation.message, info=info)
        return result

    async def _listened(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        """A streamed call whose tokens a handler reads, each told as it comes.

        Untraced, the chunks are read straight off the opened stream (no
        generator of ours per chunk) and merged on the event loop, as
        langchain-core's own streaming path (``_agenerate_with_cache``) does:
        ``agenerate_from_stream`` hands the merge to a thread, which costs
        more CPU than a short reply's merge.
        """
        if telemetry.current() is not None:
            return await agenerate_from_stream(
                _emitting(self._astream(messages, stop, **kwargs), run_manager)
            )
        stream, first = await self._open(messages, stop, kwargs)
        chunks = [first]
        try:
            await run_manager.on_llm_new_token(first.text, chunk=first)
            async for chunk in stream:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                chunks.append(chunk)
        finally:
            await stream.aclose()
        return generate_from_stream(iter(chunks))

    def _traced_call(
        self, tel: Telemetry, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> ModelCall:
        """Start this call's span (GenAI ``chat``): provider, model, max_tokens, endpoint."""
        asked = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
        return tel.model_call(
            provider=_provider(type(self)),
            model=_model_name(self),
            max_tokens=int(asked) if asked else bound_max_tokens(self),
            base_url=getattr(self, "openai_api_base", None),
            messages=messages,
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        tel = telemetry.current()
        if tel is not None:
            async for chunk in self._traced_stream(tel, messages, stop, kwargs):
                yield chunk
            return
        stream, first = await self._open(messages, stop, kwargs)
        try:
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    async def _traced_stream(
        self,
        tel: Telemetry,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[ChatGenerationChunk]:
        """:meth:`_astream` in a model call's span.

        The span is current only while the stream opens, never across a
        ``yield``: the consumer's context is not ours to change.
        """
        call = self._traced_call(tel, messages, kwargs)
        try:
            with call.current():
                stream, first = await self._open(messages, stop, kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        usage: UsageMetadata | None = first.message.usage_metadata
        # the model and finish reason come on one chunk, the usage on another (stream_usage)
        # (ChatOpenAI: in the chunk's generation_info, not its message's metadata)
        metadata: dict[str, Any] = {
            **(first.generation_info or {}),
            **first.message.response_metadata,
        }
        text: list[str] = []
        try:
            yield first
            text.append(first.text)
            async for chunk in stream:
                if chunk.message.usage_metadata:
                    usage = add_usage(usage, chunk.message.usage_metadata)
                metadata.update(chunk.generation_info or {})
                metadata.update(chunk.message.response_metadata)
                if tel.capture_content:
                    text.append(chunk.text)
                yield chunk
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            await stream.aclose()
        call.finish(AIMessage(content="".join(text), response_metadata=metadata), usage or {})

    async def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[AsyncGenerator[Any, None], Any]:
        """A stream and its first chunk, from this model or a fallback, retried per call.

        Chunks are ``Any``: their message is the provider's chunk class, with
        ``usage_metadata`` (``BaseMessageChunk`` does not declare it).
        """
        opened: tuple[AsyncGenerator[Any, None], Any] = await self._tiered(
            lambda kw, retry_if: _retrying(
                self._retry, lambda: self._each_model(self._opened, messages, stop, kw), retry_if
            ),
            kwargs,
        )
        return opened

    def _tiered(
        self,
        send: Callable[[dict[str, Any], Callable[[BaseException], bool]], Awaitable[Any]],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]:
        """``send`` the call at the standard tier, or through :func:`flex_call` with flex on.

        A flex request's refusals (429, timeout) are :func:`flex_call`'s to
        retry, not the run's policy's: one backoff, not two.
        """
        if self._flex is None:
            return send(kwargs, is_transient)

        def flexed(kw: dict[str, Any]) -> Awaitable[Any]:
            flex = kw.get("service_tier") == "flex"
            return send(kw, _not_flex_refusal if flex else is_transient)

        return flex_call(flexed, kwargs, self._flex)

    async def _each_model(
        self,
        attempt: Callable[
            [int, list[BaseMessage], list[str] | None, dict[str, Any]], Awaitable[Any]
        ],
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> Any:
        """Try ``attempt`` on this model (0), then each fallback (1, 2...); raise the first error.

        Every failure goes into the item's history, naming the model when
        there are fallbacks (LangChain's ``with_fallbacks`` would hide it).
        """
        if self._closed:
            msg = (
                "this model's session is closed: call session.llm inside "
                "`async with model_session() as session:`"
            )
            raise ConfigurationError(msg)
        first_error: Exception | None = None
        for index in range(1 + len(self._fallbacks)):
            began = time.perf_counter()
            try:
                return await attempt(index, messages, stop, kwargs)
            except Exception as exc:
                first_error = first_error or exc
                named = {"model": _model_name(self._model(index))} if self._fallbacks else {}
                _log_failure(exc, began, named)
        assert first_error is not None
        raise first_error

    def _model(self, index: int) -> Runnable[Any, Any]:
        return self if index == 0 else self._fallbacks[index - 1]

    def _charge(self, index: int, kwargs: dict[str, Any]) -> int:
        """Output tokens to charge a request up front: the call's own max_tokens."""
        asked = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
        if asked:
            return int(asked)
        return bound_max_tokens(self._model(index)) or self._budget.default_max_tokens

    async def _plain(
        self,
        index: int,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        """One plain request to model ``index``, charged to the budget."""
        began = time.perf_counter()
        async with charged_call(self._budget, messages, self._charge(index, kwargs)) as ticket:
            await BudgetRateLimiter(self._budget).aacquire()
            _note_queue(ticket, began)
            if (tel := telemetry.current()) is not None:
                _traced_wait(tel, self._budget, ticket)
            if index == 0:
                with _charged():
                    result = await super()._agenerate(messages, stop=stop, **kwargs)
            else:
                reply = await self._model(index).ainvoke(messages, _QUIET, stop=stop, **kwargs)
                result = ChatResult(generations=[ChatGeneration(message=reply)])
            message = result.generations[0].message
            ticket.used = _total_tokens(message)
            ticket.headers = _headers(message)
        return result

    async def _opened(
        self,
        index: int,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> tuple[AsyncIterator[ChatGenerationChunk], ChatGenerationChunk]:
        """Start model ``index``'s stream; return it with its first chunk, or raise its error."""
        stream = self._streamed(index, messages, stop, kwargs)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            msg = "No generations found in stream"  # langchain-core's words: a transient error
            raise ValueError(msg) from None
        return stream, first

    async def _streamed(
        self,
        index: int,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[ChatGenerationChunk]:
        began = time.perf_counter()
        async with charged_call(self._budget, messages, self._charge(index, kwargs)) as ticket:
            await BudgetRateLimiter(self._budget).aacquire()
            _note_queue(ticket, began)
            if (tel := telemetry.current()) is not None:
                _traced_wait(tel, self._budget, ticket)
            with _charged():
                async for chunk in self._provider_stream(index, messages, stop, kwargs):
                    # usage comes on one chunk (the last), headers on the first: skip the rest
                    message = chunk.message
                    if getattr(message, "usage_metadata", None):
                        ticket.used = _total_tokens(message) or ticket.used
                    if ticket.headers is None:
                        ticket.headers = _headers(message)
                    yield chunk

    def _provider_stream(
        self,
        index: int,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Model ``index``'s stream: the provider's own, with no layer of ours per chunk."""
        if index == 0 and self._provider_streams:
            return super()._astream(messages, stop=stop, **kwargs)
        return self._other_stream(index, messages, stop, kwargs)

    async def _other_stream(
        self,
        index: int,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[ChatGenerationChunk]:
        """A fallback's stream, or a model that cannot stream answering in one piece."""
        if index > 0:
            async for piece in self._model(index).astream(messages, _QUIET, stop=stop, **kwargs):
                yield ChatGenerationChunk(message=_as_chunk(piece))
            return
        result = await super()._agenerate(messages, stop=stop, **kwargs)
        yield ChatGenerationChunk(message=_as_chunk(result.generations[0].message))

    @property
    def models(self) -> list[Runnable[Any, Any]]:
        """This model, then its fallbacks: the order requests try them in."""
        return [self, *self._fallbacks]


@functools.cache
def _budgeted_class(cls: type[BaseChatModel]) -> type[BudgetedChatModel]:
    """The subclass of ``cls`` that draws from a budget (one per model class)."""
    if issubclass(cls, BudgetedChatModel):
        return cls
    streams = not (cls._astream is BaseChatModel._astream and cls._stream is BaseChatModel._stream)
    namespace = {"__module__": __name__, "_provider_streams": streams}
    made: type[BudgetedChatModel] = type(
        f"Budgeted{cls.__name__}", (BudgetedChatModel, cls), namespace
    )
    return made


def _budgeted(
    model: BaseChatModel, budget: RateBudget, retry: RetryPolicy | None, fallbacks: list[ChatModel]
) -> BudgetedChatModel:
    """``model``, rebuilt as its budgeted subclass from the fields it was given."""
    fields = {name: getattr(model, name) for name in model.model_fields_set}
    if "stream_usage" in type(model).model_fields and "stream_usage" not in fields:
        # the budget and the cost meter need a stream's usage (ChatOpenAI's off by default)
        fields["stream_usage"] = True
    budgeted = _budgeted_class(type(model))(**fields)
    budgeted._budget = budget
    budgeted._retry = retry
    budgeted._fallbacks = fallbacks
    return budgeted


@overload
def with_budget(
    llm: BaseChatModel,
    budget: RateBudget,
    *,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[ChatModel] = (),
    flex: FlexOptions | None = None,
) -> BudgetedChatModel: ...


@overload
def with_budget(
    llm: ChatModel,
    budget: RateBudget,
    *,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[ChatModel] = (),
    flex: FlexOptions | None = None,
) -> ChatModel: ...


def with_budget(
    llm: ChatModel,
    budget: RateBudget,
    *,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[ChatModel] = (),
    flex: FlexOptions | None = None,
) -> ChatModel:
    """Return ``llm`` with every request it sends drawn from ``budget``.

    ``llm`` is a chat model, optionally bound (``.bind(max_tokens=...)``, kept
    around the result) or with fallbacks (``.with_fallbacks([...])``, unpacked
    into ``fallbacks``, which the budgeted model then tries itself, so a failed
    request of the primary is logged and its 429 pauses the budget). Its LLM
    cache answers before the budget is asked, so cache hits spend nothing.

    With ``retry``, each model call is retried on its own (a failed
    map-reduce chunk does not repeat the chunks that succeeded); without, a
    call fails at its first error and the caller decides.

    With ``flex``, each call goes at OpenAI's flex tier and, refused past
    ``flex.wait_s`` of its item, at the standard tier
    (:func:`~lc_async_pipelines.runner.limits.flex.flex_call`).

    Returns:
        A :class:`BudgetedChatModel`, of the same provider class as ``llm``
        (``BudgetedChatOpenAI`` is a ``ChatOpenAI``), bound as ``llm`` was.

    Raises:
        TypeError: ``llm`` holds no chat model.
    """
    if isinstance(llm, RunnableWithFallbacks):
        return with_budget(
            llm.runnable, budget, retry=retry, fallbacks=[*llm.fallbacks, *fallbacks], flex=flex
        )
    if isinstance(llm, RunnableBinding):
        inner = with_budget(llm.bound, budget, retry=retry, fallbacks=fallbacks, flex=flex)
        return llm.model_copy(update={"bound": inner})
    if not isinstance(llm, BaseChatModel):
        msg = (
            f"expected a chat model (optionally bound or with fallbacks), got {type(llm).__name__}"
        )
        raise TypeError(msg)
    budgeted = _budgeted(llm, budget, retry, list(fallbacks))
    budgeted._flex = flex
    return budgeted


def govern(
    runnable: Runnable[Any, Any],
    budget: RateBudget,
    *,
    retry: RetryPolicy | None = None,
    flex: FlexOptions | None = None,
) -> Runnable[Any, Any]:
    """Put every chat model inside a ready ``Runnable`` under ``budget``, copying it.

    For a pipeline that holds its own model (``module:READY``): each chat
    model found in its LCEL structure (sequences, parallels, bindings,
    fallbacks) is replaced by :func:`with_budget`'s, so the run's RPM, TPM,
    calls in flight and per-call retries reach it.

    Raises:
        ConfigurationError: no chat model is reachable (one inside a
            ``RunnableLambda`` or a custom class cannot be found): the run's
            limits could not hold, so it is refused rather than run unlimited.
    """
    if isinstance(runnable, BudgetedChatModel):
        return runnable
    governed, found = map_chat_models(
        runnable, lambda m: with_budget(m, budget, retry=retry, flex=flex)
    )
    if not found:
        msg = (
            "the ready Runnable's chat model cannot be reached (inside a function or a custom "
            "class), so the run's budget and retries could not hold; give a factory that "
            "takes the model (package.module:factory) instead"
        )
        raise ConfigurationError(msg)
    return governed


@functools.cache
def _provider(cls: type[BaseChatModel]) -> str:
    """``gen_ai.provider.name`` of a model class: its package's (langchain_openai: openai)."""
    for klass in cls.__mro__:
        root = klass.__module__.partition(".")[0]
        if root.startswith("langchain_") and root != "langchain_core":
            return root.removeprefix("langchain_")
    return next(k for k in cls.__mro__ if not issubclass(k, BudgetedChatModel)).__name__
