"""A chat model behind a budget: :func:`with_budget` and the :class:`BudgetedChatModel` it returns.

Every request of the wrapped model, plain, structured or with tools, draws
from the :class:`~lc_async_pipelines.runner.limits.budget.RateBudget`, and
with a :class:`~lc_async_pipelines.runner.RetryPolicy` each call is retried on
its own, every failed attempt logged in the current item's attempt history.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.runner import _history as history
from lc_async_pipelines.runner._attach import bound_max_tokens, update_chat_models
from lc_async_pipelines.runner.limits.budget import BudgetRateLimiter, RateBudget, charged_call
from lc_async_pipelines.runner.retry import RetryPolicy, is_transient

__all__ = ["BudgetedChatModel", "with_budget"]


def _total_tokens(message: Any) -> int | None:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage["total_tokens"]) if "total_tokens" in usage else None


class BudgetedChatModel(RunnableLambda[LanguageModelInput, BaseMessage]):
    """A chat model behind a :class:`RateBudget`: what :func:`with_budget` returns.

    Invoked, it is the model: prompt in, message out, every request drawn
    from the budget. :meth:`with_structured_output` constrains replies to a
    schema the way the wrapped model does (for ``ChatOpenAI``, OpenAI's
    structured outputs or llama-server's JSON-schema decoding), still within
    the budget.
    """

    def __init__(
        self, llm: ChatModel, budget: RateBudget, retry: RetryPolicy | None = None
    ) -> None:
        """Wrap ``llm`` (a chat model, maybe bound or with fallbacks) to draw from ``budget``.

        With ``retry``, each call is retried on its own (transient errors, with
        backoff that honours ``Retry-After``); every failed attempt goes into
        the current item's attempt history when the runner runs it.
        """
        limited = update_chat_models(llm, rate_limiter=BudgetRateLimiter(budget))
        max_tokens = bound_max_tokens(llm) or budget.default_max_tokens

        async def attempt(value: LanguageModelInput, config: RunnableConfig, kwargs: Any) -> Any:
            async with charged_call(
                budget, value, int(kwargs.get("max_tokens") or max_tokens)
            ) as t:
                message: BaseMessage = await limited.ainvoke(value, config, **kwargs)
                t.used = _total_tokens(message)
                return message

        async def call(
            value: LanguageModelInput, config: RunnableConfig, **kwargs: Any
        ) -> BaseMessage:
            message: BaseMessage = await _with_retries(retry, attempt, value, config, kwargs)
            return message

        super().__init__(call, name="budgeted_chat_model")
        self._limited = limited
        self._budget = budget
        self._max_tokens = max_tokens
        self._retry = retry

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Return the wrapped model's ``with_structured_output(schema, **kwargs)``, budgeted.

        Returns:
            ``Runnable[LanguageModelInput, dict | BaseModel]`` (or, with
            ``include_raw``, ``{"raw", "parsed", "parsing_error"}``).

        Raises:
            NotImplementedError: the wrapped model has no structured output.
            OutputParserException: on invocation, without ``include_raw``, the
                reply did not parse.
        """
        method = getattr(self._limited, "with_structured_output", None)
        if not callable(method):
            msg = f"{type(self._limited).__name__} has no with_structured_output"
            raise NotImplementedError(msg)
        structured: Runnable[LanguageModelInput, Any] = method(schema, include_raw=True, **kwargs)
        budget, retry = self._budget, self._retry
        max_tokens = int(kwargs.get("max_tokens") or self._max_tokens)

        async def attempt(value: LanguageModelInput, config: RunnableConfig, _: Any) -> Any:
            async with charged_call(budget, value, max_tokens) as ticket:
                raw: dict[str, Any] = await structured.ainvoke(value, config)
                ticket.used = _total_tokens(raw.get("raw"))
                return raw

        async def call(value: LanguageModelInput, config: RunnableConfig) -> Any:
            result: dict[str, Any] = await _with_retries(retry, attempt, value, config, {})
            if include_raw:
                return result
            error = result.get("parsing_error")
            if isinstance(error, BaseException):
                raise error
            return result.get("parsed")

        return RunnableLambda(call, name="budgeted_structured_output")

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Return the wrapped model's ``bind_tools(tools, **kwargs)``, budgeted: an agent's model.

        Every request of the tool-calling loop draws from the budget and is
        retried on its own, as plain calls are.

        Returns:
            ``Runnable[LanguageModelInput, AIMessage]`` whose replies may hold ``tool_calls``.

        Raises:
            NotImplementedError: the wrapped model cannot call tools.
        """
        method = getattr(self._limited, "bind_tools", None)
        if not callable(method):
            msg = f"{type(self._limited).__name__} has no bind_tools"
            raise NotImplementedError(msg)
        bound: Runnable[LanguageModelInput, BaseMessage] = method(tools, **kwargs)
        budget, max_tokens, retry = self._budget, self._max_tokens, self._retry

        async def attempt(value: LanguageModelInput, config: RunnableConfig, _: Any) -> Any:
            async with charged_call(budget, value, max_tokens) as ticket:
                message = await bound.ainvoke(value, config)
                ticket.used = _total_tokens(message)
                return message

        async def call(value: LanguageModelInput, config: RunnableConfig) -> Any:
            return await _with_retries(retry, attempt, value, config, {})

        return RunnableLambda(call, name="budgeted_tool_model")


async def _with_retries(
    retry: RetryPolicy | None,
    attempt: Callable[[LanguageModelInput, RunnableConfig, Any], Awaitable[Any]],
    value: LanguageModelInput,
    config: RunnableConfig,
    kwargs: Any,
) -> Any:
    """Run one model call's attempts; log each failure into the item's history."""
    log = history.current()
    entries: list[dict[str, Any]] = []

    def on_retry(exc: BaseException, wait: float) -> None:
        if entries:
            entries[-1]["wait_s"] = round(wait, 3)

    policy = retry or RetryPolicy(max_retries=0)
    try:
        async for attempt_state in policy.retrying(on_retry=on_retry):
            with attempt_state:
                began = time.perf_counter()
                try:
                    return await attempt(value, config, kwargs)
                except Exception as exc:
                    if log is not None:
                        entries.append(
                            log.add(exc, stage="call", seconds=time.perf_counter() - began)
                        )
                    raise
    except Exception as exc:
        if log is not None and retry is not None and is_transient(exc):
            log.exhausted = True  # the item must not repeat its calls that succeeded
        raise
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def with_budget(
    llm: ChatModel, budget: RateBudget, *, retry: RetryPolicy | None = None
) -> BudgetedChatModel:
    """Wrap ``llm`` so that every request it sends draws from ``budget``.

    ``llm`` is a chat model, optionally bound (``.bind(max_tokens=...)``) or
    with fallbacks; a copy of it gets a :class:`BudgetRateLimiter`, so calls
    answered by its LLM cache skip the budget. Bound keyword arguments reach
    the model unchanged; callbacks and metadata pass through the config, so
    streaming handlers still see every token.

    With ``retry``, each model call is retried on its own (a failed
    map-reduce chunk does not repeat the chunks that succeeded); without, a
    call fails at its first error and the caller decides.

    Returns:
        A :class:`BudgetedChatModel` (``Runnable[LanguageModelInput,
        BaseMessage]``), usable wherever ``llm`` was.

    Raises:
        TypeError: ``llm`` holds no chat model.
    """
    return BudgetedChatModel(llm, budget, retry)
