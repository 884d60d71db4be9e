"""One budget shared by all model calls of a run: requests and tokens per minute, calls in flight.

LangChain's ``max_concurrency`` is a fresh semaphore per ``abatch`` call, so
nested calls (the map step of map-reduce under a concurrent runner) multiply
it. The budget sits on the chat model instead, so every call, however deeply
nested, draws from the same limits.

The budget is plugged into the model's ``rate_limiter`` slot, which
langchain-core checks only after a cache miss (``BaseChatModel._agenerate_with_cache``),
so calls answered by the LLM cache cost nothing. Its rates are metered by a
store (:mod:`lc_async_pipelines.runner.limits.store`); the budget keeps what is
local to a process: calls in flight and its pause after a 429.
:func:`charged_call` carries one call's token estimate to the rate limiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Self

from langchain_core.language_models import LanguageModelInput
from langchain_core.prompt_values import PromptValue
from langchain_core.rate_limiters import BaseRateLimiter

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.limits.store import BudgetRates, BudgetStore, MemoryBudgetStore
from lc_async_pipelines.runner.retry import is_rate_limit, retry_after

__all__ = ["BudgetRateLimiter", "CallTicket", "RateBudget", "charged_call", "check_limits"]


@dataclass
class CallTicket:
    """What one budgeted call has taken from the budget so far (see :func:`charged_call`)."""

    estimate: int
    slot: bool = False
    charged: float = 0.0
    requests: int = 0
    used: int | None = None


_TICKET: ContextVar[CallTicket | None] = ContextVar("pipelines_budget_ticket", default=None)


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
        store: where the rates are metered (None: in this process, a
            :class:`~lc_async_pipelines.runner.limits.store.MemoryBudgetStore`
            of these limits); set once the budget is built.

    On a 429 every call of the run waits out the provider's ``Retry-After``
    (:meth:`cool_down`), rather than each item hammering on its own backoff.

    The rates are metered by a :class:`~lc_async_pipelines.runner.limits.store.BudgetStore`:
    in this process by default (:class:`~lc_async_pipelines.runner.limits.store.MemoryBudgetStore`).
    To share them between processes or machines, use
    :class:`~lc_async_pipelines.runner.limits.redis_budget.RedisRateBudget`
    (same arguments, plus a Redis URL and key), or ``open_budget(url, ...)``,
    which picks either. Both work as async context managers (``async with
    budget:`` connects and closes; nothing to do in memory), so callers can
    treat them alike.

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
    store: BudgetStore | None = field(default=None, kw_only=True, repr=False, compare=False)
    requests_sent: int = field(init=False, default=0)
    throttled: int = field(init=False, default=0)
    _resume_at: float = field(init=False, default=0.0)
    _slots: asyncio.Semaphore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        check_limits(self)
        if self.store is None:
            self.store = MemoryBudgetStore(self.rates)
        if self.max_in_flight:
            self._slots = asyncio.Semaphore(self.max_in_flight)

    @property
    def rates(self) -> BudgetRates:
        """The rates the store meters: ``rpm`` and ``tpm`` less the margin."""
        return BudgetRates.of(self.rpm, self.tpm, self.margin)

    def _store(self) -> BudgetStore:
        if self.store is None:  # pragma: no cover - set by __post_init__
            raise AssertionError("a RateBudget has a store once built")
        return self.store

    async def connect(self) -> None:
        """Get ready for calls: connect the store (nothing to do in memory)."""
        await self._store().connect()

    async def aclose(self) -> None:
        """Release what :meth:`connect` took (nothing in memory)."""
        await self._store().aclose()

    async def __aenter__(self) -> Self:
        """Connect (:meth:`connect`) and return the budget."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close (:meth:`aclose`)."""
        await self.aclose()

    def cool_down(self, seconds: float | None) -> None:
        """Hold every new request of the run for ``seconds`` (default ``cooldown_s``).

        This process pauses at once; the store tells the others sharing it
        (a Redis store sends the pause in a task: if Redis is down then, only
        this process pauses).
        """
        self.throttled += 1
        loop = asyncio.get_running_loop()
        wait = self.cooldown_s if seconds is None else seconds
        self._resume_at = max(self._resume_at, loop.time() + wait)
        self._store().pause(wait)

    async def _acquire(self, ticket: CallTicket) -> None:
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
        await self._store().reserve(ticket.charged)
        ticket.requests += 1
        self.requests_sent += 1

    async def _settle(self, ticket: CallTicket, used_tokens: int | None) -> None:
        if ticket.slot and self._slots is not None:
            ticket.slot = False
            self._slots.release()
        if not self.tpm or not ticket.requests or used_tokens is None:
            return
        await self._store().adjust(used_tokens - ticket.charged)


def check_limits(budget: RateBudget) -> None:
    """Raise :class:`ConfigurationError` naming the first of ``budget``'s limits out of range."""
    check_number("rpm", budget.rpm, minimum=0, strict=True)
    check_number("tpm", budget.tpm, minimum=0, strict=True)
    check_number("max_in_flight", budget.max_in_flight, minimum=1, whole=True)
    check_number("cooldown_s", budget.cooldown_s, minimum=0)
    check_number("default_max_tokens", budget.default_max_tokens, minimum=1, whole=True)
    if not 0 <= budget.margin < 1:
        msg = f"margin must be in [0, 1), got {budget.margin}"
        raise ConfigurationError(msg)


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
            ticket = CallTicket(estimate=self.budget.default_max_tokens)
        await self.budget._acquire(ticket)
        if ticket is not _TICKET.get():
            await self.budget._settle(ticket, None)
        return True


@asynccontextmanager
async def charged_call(
    budget: RateBudget, value: LanguageModelInput, max_tokens: int
) -> AsyncIterator[CallTicket]:
    """Carry one call's token estimate to the rate limiter; settle with its usage after.

    Set ``ticket.used`` to the call's total tokens before leaving the block; a
    429 raised inside pauses the budget for its ``Retry-After``.
    """
    ticket = CallTicket(estimate=estimate_tokens(_prompt_text(value)) + max_tokens)
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
