"""OpenAI's flex tier: cheaper, slower, sometimes refused; each item falls back to standard in time.

A request sent with ``service_tier="flex"`` is priced at Batch API rates
but may wait for capacity: it is answered more slowly, and refused with a
429 "Resource Unavailable" when capacity is short, which OpenAI does not
charge for; its advice is to raise the request timeout (its examples use
15 minutes), retry with backoff, or send the request at the standard tier
(https://platform.openai.com/docs/guides/flex-processing).

:func:`flex_call` does that for one model call: it sends the call at the
flex tier with the longer timeout; a refusal (a 429 or a timeout) is retried
after a backoff while the item is within :attr:`FlexOptions.wait_s` of its
first flex request, and past that the call goes at the standard tier, as do
the item's later calls (a map-reduce's next chunks), without a flex try. The
budgeted model uses it when built with ``flex=`` (:func:`with_budget`,
:func:`~lc_async_pipelines.session.model_session`, ``pipelines run --lane
flex``); the reply's ``response_metadata["service_tier"]`` (OpenAI echoes the
tier that answered) says which tier served it, and the cost meter prices it at
that tier's rates.

A flex 429 is not the account's rate limit: it pauses no budget
(:func:`is_flex_unavailable`), so the run's other requests go on. Its retry
waits the backoff, except when the run's budget paces requests (``rpm`` or
``tpm``): the retry then takes its turn in the budget like any request and
adds no backoff of its own (:func:`~lc_async_pipelines.runner.retry.mark_paced`),
only the ``Retry-After`` the server sent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from langchain_core.exceptions import ModelTimeoutError

from lc_async_pipelines.runner import _history as history
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.retry import is_paced, retry_after

__all__ = [
    "FLEX_TIER",
    "FlexOptions",
    "flex_call",
    "in_flex_request",
    "is_flex_refusal",
    "is_flex_unavailable",
]

T = TypeVar("T")

FLEX_TIER = "flex"
"""The ``service_tier`` of a flex request, and of its reply."""

# The error codes of a 429 that is the account's own limit
# (https://platform.openai.com/docs/guides/error-codes): anything else on a
# flex request is flex capacity.
_LIMIT_CODES = frozenset({"rate_limit_exceeded", "insufficient_quota"})

# True while a flex request is being sent (read by the budget's 429 handling).
_IN_FLEX: ContextVar[bool] = ContextVar("pipelines_flex_request", default=False)


@dataclass(frozen=True)
class FlexOptions:
    """How calls use the flex tier (``pipelines run --lane flex --flex-wait SECONDS``).

    Attributes:
        wait_s: seconds an item keeps trying flex, from its first flex request;
            a refusal past that sends the call at the standard tier (0: one
            flex attempt, then standard).
        timeout_s: timeout of each flex request, seconds (OpenAI's examples:
            900, against the SDK's default of 600).
        initial: first backoff after a refusal, seconds; doubled each time.
        max_wait: backoff cap, seconds.
        jitter: uniform jitter added to each backoff, seconds.
        clock: monotonic clock, seconds (a test gives a controlled one).
        sleep: async sleep (a test gives one that moves its clock).

    Raises:
        ConfigurationError: a figure is negative, not a number, or ``timeout_s`` is 0.
    """

    wait_s: float = 600.0
    timeout_s: float = 900.0
    initial: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def __post_init__(self) -> None:
        for name in ("wait_s", "initial", "max_wait", "jitter"):
            check_number(f"flex {name}", getattr(self, name), minimum=0)
        check_number("flex timeout_s", self.timeout_s, minimum=0, strict=True)

    def backoff(self, refusals: int, exc: BaseException) -> float:
        """Seconds to wait after the ``refusals``-th refusal of a call (1, 2, ...).

        ``initial * 2**(refusals-1)`` capped at ``max_wait``, plus jitter, or
        the server's ``Retry-After`` when longer; only that ``Retry-After``
        when a budget paces the retry (:func:`~lc_async_pipelines.runner.retry.is_paced`).
        """
        asked = retry_after(exc)
        if is_paced(exc):
            return min(asked, self.max_wait) if asked is not None else 0.0
        wait: float = min(self.max_wait, self.initial * 2.0 ** (refusals - 1))
        wait += random.uniform(0, self.jitter)
        return max(wait, min(asked, self.max_wait)) if asked is not None else wait


def is_flex_unavailable(exc: BaseException) -> bool:
    """True for a 429 on a flex request that is flex capacity, not the account's limit.

    OpenAI answers a flex request it has no capacity for with HTTP 429
    "Resource Unavailable" (https://platform.openai.com/docs/guides/flex-processing);
    the account's own limits are 429s with the error code
    ``rate_limit_exceeded`` or ``insufficient_quota``
    (https://platform.openai.com/docs/guides/error-codes). Only inside a flex
    request (:func:`in_flex_request`): elsewhere a 429 is a rate limit.
    """
    if not _IN_FLEX.get() or not isinstance(exc, openai.APIStatusError):
        return False
    return exc.status_code == 429 and exc.code not in _LIMIT_CODES


def is_flex_refusal(exc: BaseException) -> bool:
    """True for what makes a flex call wait and try again, then go standard: a 429 or a timeout.

    A 429 of the account's limit counts too (the budget has paused for it):
    retrying at flex or going standard is the same request either way.
    """
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429
    return isinstance(exc, openai.APITimeoutError | ModelTimeoutError | asyncio.TimeoutError)


def in_flex_request() -> bool:
    """True while a flex request of :func:`flex_call` is being sent (in this task)."""
    return _IN_FLEX.get()


@contextmanager
def _flex_request() -> Any:
    token = _IN_FLEX.set(True)
    try:
        yield
    finally:
        _IN_FLEX.reset(token)


def _first_flex_request(options: FlexOptions) -> tuple[float, bool]:
    """When the current item first tried flex, and whether that is now (this call is its first).

    Outside the runner (no item), every call is a first.
    """
    log = history.current()
    now = options.clock()
    if log is None:
        return now, True
    if log.flex_started is None:
        log.flex_started = now
        return now, True
    return log.flex_started, False


async def flex_call(
    send: Callable[[dict[str, Any]], Awaitable[T]],
    kwargs: dict[str, Any],
    options: FlexOptions,
) -> T:
    """Return ``await send(kwargs)`` at the flex tier, else, past ``options.wait_s``, standard.

    Args:
        send: sends one model call with the given request arguments (and
            retries it under the run's policy, but not on a flex refusal).
        kwargs: the call's request arguments; the flex request adds
            ``service_tier="flex"`` and ``timeout=options.timeout_s``, the
            standard one sends them unchanged.
        options: the wait, timeout and backoff.

    Returns:
        The reply, from whichever tier answered (its ``service_tier`` says which).

    Raises:
        Exception: the standard request's error, or a flex request's error that
            is not a refusal (:func:`is_flex_refusal`: a 400 for a model flex
            does not serve goes to the caller, not to the standard tier).
    """
    flex_kwargs = {**kwargs, "service_tier": FLEX_TIER, "timeout": options.timeout_s}
    started, first = _first_flex_request(options)
    if not first and options.clock() - started >= options.wait_s:
        return await send(kwargs)  # the item's flex time is spent: no slow flex try now
    refusals = 0
    while True:
        try:
            with _flex_request():
                return await send(flex_kwargs)
        except Exception as exc:
            if not is_flex_refusal(exc):
                raise
            refusals += 1
            wait = options.backoff(refusals, exc)
        # a wait that would end past the item's flex time is not waited: go standard now
        if options.clock() + wait - started >= options.wait_s:
            return await send(kwargs)
        await options.sleep(wait)
