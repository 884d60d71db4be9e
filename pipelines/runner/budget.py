"""One budget shared by all model calls of a run: requests and tokens per minute, calls in flight.

LangChain's ``max_concurrency`` is a fresh semaphore per ``abatch`` call, so
nested calls (the map step of map-reduce under a concurrent runner) multiply
it. The budget sits on the chat model instead, so every call, however deeply
nested, draws from the same limits.

The budget is plugged into the model's ``rate_limiter`` slot, which
langchain-core checks only after a cache miss (``BaseChatModel._agenerate_with_cache``),
so calls answered by the LLM cache cost nothing. Rates use the leaky bucket of
:mod:`lc_async_pipelines.runner._bucket`, which can refund a charge and serves
its waiters in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import _history as history
from lc_async_pipelines.runner._attach import bound_max_tokens, update_chat_models
from lc_async_pipelines.runner._bucket import LeakyBucket
from lc_async_pipelines.runner._errors import is_rate_limit, is_transient, retry_after
from lc_async_pipelines.runner.core import RetryPolicy, check_number

__all__ = ["BudgetRateLimiter", "BudgetedChatModel", "RateBudget", "with_budget"]

_PERIOD_S = 60.0
# The TPM bucket holds one second of tokens, not a minute's (the usual limiter
# of tpm tokens a minute): providers may enforce per-minute limits per second
# ("quantized", https://platform.openai.com/docs/guides/rate-limits), and a
# minute's bucket lets a run start with a minute's tokens at once (measured
# against the mock: 1.255x the bound and 2.7% 429s; with one second's: 1.032x
# and 0.4%). Refunds go back into this bucket, so it must hold a typical one.
_TPM_DEPTH_S = 1.0
# Room of the RPM bucket, in requests (why 2: see RateBudget._make_limits).
_RPM_ROOM = 2


@dataclass
class _Ticket:
    """What one budgeted call has taken from the budget so far."""

    estimate: int
    slot: bool = False
    charged: float = 0.0
    requests: int = 0
    used: int | None = None


_TICKET: ContextVar[_Ticket | None] = ContextVar("pipelines_budget_ticket", default=None)


def _prompt_text(value: LanguageModelInput) -> str:
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, str):
        return value
    return " ".join(str(getattr(m, "content", m)) for m in value)


@dataclass
class RateBudget:
    """Limits shared by all model calls of a run.

    Args:
        rpm: requests per minute (None: unlimited). Requests are spaced evenly,
            ``60 / rpm`` seconds apart, with no burst at the start.
        tpm: tokens per minute, input + output (None: unlimited), spent evenly:
            the bucket holds one second of tokens and starts full, so there is
            no burst at the start. A call is charged its estimated input tokens
            plus its ``max_tokens`` (at most a minute's tokens) before it is
            sent, in pieces no larger than the bucket, so no call deadlocks,
            however large; once the server reports usage the difference is
            charged or refunded.
        max_in_flight: model calls in flight at once, across the whole run.
        default_max_tokens: the output charge of a call when neither the call
            nor the model sets ``max_tokens``.
        cooldown_s: pause of the whole run after a 429 without ``Retry-After``.
        margin: fraction of ``rpm`` and ``tpm`` left unused (0.01: aim at 99%).
            Sent at exactly the limit, requests reach a provider's fixed-window
            counter with network jitter, and a few land in a window already full.

    On a 429 every call of the run waits out the provider's ``Retry-After``
    (:meth:`cool_down`), rather than each item hammering on its own backoff.

    The limits live in this process. To share them between processes or
    machines, use :class:`lc_async_pipelines.runner.redis.RedisRateBudget`
    (same arguments, plus a Redis URL and key), or ``open_budget(url, ...)``
    there, which picks either. Both work as async context managers
    (``async with budget:`` connects and closes; nothing to do in memory), so
    callers can treat them alike.

    Attributes:
        requests_sent: requests that passed the budget (cache hits never do).
        throttled: 429s seen.
    """

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int | None = None
    default_max_tokens: int = 512
    cooldown_s: float = 1.0
    margin: float = 0.01
    requests_sent: int = field(init=False, default=0)
    throttled: int = field(init=False, default=0)
    _resume_at: float = field(init=False, default=0.0)
    _requests: LeakyBucket | None = field(init=False, default=None)
    _tokens: LeakyBucket | None = field(init=False, default=None)
    _slots: asyncio.Semaphore | None = field(init=False, default=None)
    _primed: bool = field(init=False, default=False)
    # The shape of the limits, for a subclass that keeps them elsewhere (Redis).
    _RPM_ROOM: ClassVar[int] = _RPM_ROOM
    _TPM_DEPTH_S: ClassVar[float] = _TPM_DEPTH_S

    def __post_init__(self) -> None:
        check_number("rpm", self.rpm, minimum=0, strict=True)
        check_number("tpm", self.tpm, minimum=0, strict=True)
        check_number("max_in_flight", self.max_in_flight, minimum=1, whole=True)
        check_number("cooldown_s", self.cooldown_s, minimum=0)
        check_number("default_max_tokens", self.default_max_tokens, minimum=1, whole=True)
        if not 0 <= self.margin < 1:
            msg = f"margin must be in [0, 1), got {self.margin}"
            raise ConfigurationError(msg)
        self._make_limits(1.0 - self.margin)

    def _make_limits(self, share: float) -> None:
        """Build the limits' meters at ``share`` of each rate (a subclass keeps its own)."""
        if self.rpm:
            # Room for 2 requests, primed with 1 on first use: no burst at the
            # start, and a waiter woken late by a busy loop (about 1 ms) does not
            # push every later request back, as with room for 1. Not more room:
            # a catch-up burst lands in a provider's next window and draws 429s
            # (measured: 0.4% of calls with room for 5 at 50 requests/s).
            self._requests = LeakyBucket(_RPM_ROOM, self.rpm * share / _PERIOD_S)
        if self.tpm:
            per_s = self.tpm * share / _PERIOD_S
            self._tokens = LeakyBucket(per_s * _TPM_DEPTH_S, per_s)
        if self.max_in_flight:
            self._slots = asyncio.Semaphore(self.max_in_flight)

    async def connect(self) -> None:
        """Get ready for calls: nothing to do in memory (a shared budget connects here)."""

    async def aclose(self) -> None:
        """Release what :meth:`connect` took: nothing in memory."""

    async def __aenter__(self) -> Self:
        """Connect (:meth:`connect`) and return the budget."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close (:meth:`aclose`)."""
        await self.aclose()

    def cool_down(self, seconds: float | None) -> None:
        """Hold every new request of the run for ``seconds`` (default ``cooldown_s``)."""
        self.throttled += 1
        loop = asyncio.get_running_loop()
        wait = self.cooldown_s if seconds is None else seconds
        self._resume_at = max(self._resume_at, loop.time() + wait)

    async def _acquire(self, ticket: _Ticket) -> None:
        loop = asyncio.get_running_loop()
        # A loop, not one sleep: another 429 may push the deadline while we wait.
        while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self._slots is not None and not ticket.slot:
            # A fallback's second request reuses the slot: taking two could deadlock.
            await self._slots.acquire()
            ticket.slot = True
        if self.tpm:
            # Capped at a minute's tokens: a bigger request could never fit any
            # provider minute, and should fail there rather than wait here for ever.
            ticket.charged = min(float(ticket.estimate), self.tpm * (1.0 - self.margin))
        await self._take(ticket.charged)
        ticket.requests += 1
        self.requests_sent += 1

    async def _take(self, tokens: float) -> None:
        """Wait until one request and ``tokens`` tokens fit the rates; take them.

        The hook a shared budget overrides (its meters live elsewhere).
        """
        await self._prime()
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            await self._tokens.charge(tokens)

    async def _prime(self) -> None:
        """Fill the buckets on first use, so a run does not start with a burst.

        Empty buckets have room at once, so these acquires do not wait. The RPM
        bucket keeps room for one request: the catch-up after a late wake-up.
        """
        if self._primed:
            return
        self._primed = True
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None:
            await self._tokens.acquire(self._tokens.capacity)

    async def _settle(self, ticket: _Ticket, used_tokens: int | None) -> None:
        if ticket.slot and self._slots is not None:
            ticket.slot = False
            self._slots.release()
        if not self.tpm or not ticket.requests or used_tokens is None:
            return
        await self._correct(used_tokens - ticket.charged)

    async def _correct(self, difference: float) -> None:
        """Charge (> 0) or refund (< 0) the tokens a call used beyond (or short of) its charge.

        The hook a shared budget overrides.
        """
        if self._tokens is None:
            return
        if difference > 0:
            await self._tokens.charge(difference)
        elif difference < 0:
            self._tokens.refund(-difference)


class BudgetRateLimiter(BaseRateLimiter):
    """langchain-core's rate-limiter interface over a :class:`RateBudget`.

    Set by :func:`with_budget` on the chat model, where langchain-core calls
    :meth:`aacquire` right before each request and never on a cache hit. Only
    the async path is supported: the budget's limits live on the event loop.
    """

    def __init__(self, budget: RateBudget) -> None:
        """Draw from ``budget``."""
        self.budget = budget

    def acquire(self, *, blocking: bool = True) -> bool:
        """Refuse: a budget is shared on an event loop (use ``ainvoke``)."""
        msg = "a RateBudget is async-only: call the chain with ainvoke/abatch/astream"
        raise RuntimeError(msg)

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Wait until the budget has room for the current call; return True."""
        ticket = _TICKET.get()
        if ticket is None:  # a call that did not come through with_budget's wrapper
            ticket = _Ticket(estimate=self.budget.default_max_tokens)
        await self.budget._acquire(ticket)
        if ticket is not _TICKET.get():
            await self.budget._settle(ticket, None)
        return True


@asynccontextmanager
async def _charged(
    budget: RateBudget, value: LanguageModelInput, max_tokens: int
) -> AsyncIterator[_Ticket]:
    """Carry one call's token estimate to the rate limiter; settle with its usage after."""
    ticket = _Ticket(estimate=estimate_tokens(_prompt_text(value)) + max_tokens)
    reset = _TICKET.set(ticket)
    try:
        yield ticket
    except Exception as exc:
        if is_rate_limit(exc):
            budget.cool_down(retry_after(exc))
        raise
    finally:
        _TICKET.reset(reset)
        await budget._settle(ticket, ticket.used)


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
            async with _charged(budget, value, int(kwargs.get("max_tokens") or max_tokens)) as t:
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
            async with _charged(budget, value, max_tokens) as ticket:
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
            async with _charged(budget, value, max_tokens) as ticket:
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
