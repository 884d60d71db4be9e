"""One budget shared by all model calls of a run: requests and tokens per minute, calls in flight.

LangChain's ``max_concurrency`` is a fresh semaphore per ``abatch`` call, so
nested calls (the map step of map-reduce under a concurrent runner) multiply
it. The budget wraps the chat model instead, so every call, however deeply
nested, draws from the same limits. Rates use aiolimiter's leaky bucket
(https://aiolimiter.readthedocs.io/).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiolimiter import AsyncLimiter
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from pipelines._text import estimate_tokens
from pipelines._types import ChatModel
from pipelines.runner._errors import is_rate_limit, retry_after

__all__ = ["RateBudget", "with_budget"]

_PERIOD_S = 60.0


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
        rpm: requests per minute (None: unlimited).
        tpm: tokens per minute, input + output (None: unlimited). A call is
            charged its estimated input tokens plus its ``max_tokens`` before it
            starts, and the excess of the reported usage over that after it ends.
            A call larger than the whole bucket is charged the bucket, so it
            waits for a full bucket instead of deadlocking.
        max_in_flight: model calls in flight at once, across the whole run.
        default_max_tokens: the output charge of a call bound without ``max_tokens``.
        cooldown_s: pause of the whole run after a 429 without ``Retry-After``.

    On a 429 every call of the run waits out the provider's ``Retry-After``
    (:meth:`cool_down`), rather than each item hammering on its own backoff.
    """

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int | None = None
    default_max_tokens: int = 512
    cooldown_s: float = 1.0
    throttled: int = field(init=False, default=0)
    _resume_at: float = field(init=False, default=0.0)
    requests: AsyncLimiter | None = field(init=False, default=None)
    tokens: AsyncLimiter | None = field(init=False, default=None)
    _slots: asyncio.Semaphore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rpm:
            # max_rate=1 over 60/rpm s: no burst at start, an even request rate.
            self.requests = AsyncLimiter(1, _PERIOD_S / self.rpm)
        if self.tpm:
            self.tokens = AsyncLimiter(self.tpm, _PERIOD_S)
        if self.max_in_flight:
            self._slots = asyncio.Semaphore(self.max_in_flight)

    async def _charge(self, amount: float) -> None:
        if self.tokens is not None and amount > 0:
            await self.tokens.acquire(min(amount, self.tokens.max_rate))

    def cool_down(self, seconds: float | None) -> None:
        """Hold every new call of the run for ``seconds`` (default ``cooldown_s``)."""
        self.throttled += 1
        loop = asyncio.get_running_loop()
        wait = self.cooldown_s if seconds is None else seconds
        self._resume_at = max(self._resume_at, loop.time() + wait)

    @contextlib.asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[None]:
        """Wait for room for one call of ``estimated_tokens`` tokens, then hold a slot."""
        loop = asyncio.get_running_loop()
        # A loop, not one sleep: another 429 may push the deadline while we wait.
        while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self.requests is not None:
                await self.requests.acquire()
            await self._charge(estimated_tokens)
            yield
        finally:
            if self._slots is not None:
                self._slots.release()

    async def settle(self, estimated_tokens: int, used_tokens: int) -> None:
        """Charge what a call used beyond its estimate (nothing when it used less)."""
        await self._charge(used_tokens - estimated_tokens)


def with_budget(llm: ChatModel, budget: RateBudget) -> Runnable[LanguageModelInput, BaseMessage]:
    """Wrap ``llm`` so that every call through it draws from ``budget``.

    Bound keyword arguments (``llm.bind(max_tokens=...)`` or a factory's own
    ``.bind``) reach the model unchanged; callbacks and metadata pass through
    the config, so streaming handlers still see every token.

    Returns:
        ``Runnable[LanguageModelInput, BaseMessage]``, usable wherever ``llm`` was.
    """

    async def call(value: LanguageModelInput, config: RunnableConfig, **kwargs: Any) -> BaseMessage:
        max_tokens = int(kwargs.get("max_tokens") or budget.default_max_tokens)
        estimate = estimate_tokens(_prompt_text(value)) + max_tokens
        async with budget.slot(estimate):
            try:
                message = await llm.ainvoke(value, config, **kwargs)
            except Exception as exc:
                if is_rate_limit(exc):
                    budget.cool_down(retry_after(exc))
                raise
        usage = getattr(message, "usage_metadata", None)
        if usage:
            await budget.settle(estimate, int(usage.get("total_tokens", 0)))
        return message

    return RunnableLambda(call, name="budgeted_chat_model")
