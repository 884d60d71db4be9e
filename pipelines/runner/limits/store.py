"""Where a budget's rates are metered: the :class:`BudgetStore` interface, and the in-memory store.

A :class:`~lc_async_pipelines.runner.limits.budget.RateBudget` keeps what is
local to a process itself (calls in flight, this process's pause after a
429, its counters) and asks its store for the rates: :meth:`BudgetStore.reserve`
before each request, :meth:`BudgetStore.adjust` once the call's usage is
known, :meth:`BudgetStore.pause` after a 429 of the limit,
:meth:`BudgetStore.hold` when a response says a limit is spent, and
:meth:`BudgetStore.set_pace` as the budget's pacing adapts. :class:`MemoryBudgetStore`
meters them in this process with leaky buckets (see
:mod:`lc_async_pipelines.runner.limits._bucket`, which can refund a charge and
serves its waiters in arrival order);
:class:`~lc_async_pipelines.runner.limits.redis_budget.RedisBudgetStore` in
Redis, shared by every process that names it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from lc_async_pipelines.runner.limits._bucket import LeakyBucket
from lc_async_pipelines.runner.limits._window import Booking, WindowLog

__all__ = [
    "PERIOD_S",
    "RPM_CATCH_UP_S",
    "RPM_ROOM",
    "TPM_DEPTH_S",
    "WINDOW_GUARD_S",
    "WINDOW_S",
    "BudgetRates",
    "BudgetStore",
    "MemoryBudgetStore",
    "request_room",
]

PERIOD_S = 60.0
"""The period of the limits, seconds: they are per minute."""

# The TPM bucket holds one second of tokens, not a minute's (the usual limiter
# of tpm tokens a minute): providers may enforce per-minute limits per second
# ("quantized", https://platform.openai.com/docs/guides/rate-limits), and a
# minute's bucket lets a run start with a minute's tokens at once (measured
# against the mock: 1.255x the bound and 2.7% 429s; with one second's: 1.032x
# and 0.4%). Refunds go back into this bucket, so it must hold a typical one.
TPM_DEPTH_S = 1.0
"""Depth of the tokens bucket, seconds of tokens."""

# Room for 1 request and a little catch-up, primed with 1 on first use: no
# burst at the start, and a waiter woken late by a busy loop (up to
# RPM_CATCH_UP_S) does not push every later request back, as with room for 1.
# Not more: a provider that enforces a per-minute limit per second
# (https://platform.openai.com/docs/guides/rate-limits, "quantized") counts the
# requests of each 1 s window, and paced at 99% a window has 1% of a second to
# spare (10 ms). A catch-up of a whole request (room for 2, the earlier shape)
# lets a late request open a window and the next one follow at once: measured
# against the mock at 600 RPM on a loaded machine, 2% of calls 429.
RPM_CATCH_UP_S = 0.004
"""How late a request may go without pushing back the later ones, seconds."""

RPM_ROOM = 2
"""Most room of the requests bucket, in requests (at high rates, catch-up is capped here)."""


# Besides the rates, each request is booked in a log of the last window
# (_window.py): a provider counting whole requests per one-second window sees
# a bucket's rate plus the request that opened the window. The window log
# counts the limits themselves (no margin: its counts are whole requests), over
# a window widened by a guard against requests reaching the provider out of
# step (measured on a loaded machine: from the client's send to the mock's
# count, 5 ms median, 12 ms p90, 54 ms at most).
WINDOW_S = 1.0
"""The provider's window, seconds: per-minute limits enforced per second."""

WINDOW_GUARD_S = 0.02
"""How far out of step requests may reach the provider, seconds: the window log spans this more."""


def request_room(rpm: float) -> float:
    """Room of the requests bucket at ``rpm``: a request and :data:`RPM_CATCH_UP_S` of catch-up."""
    return min(float(RPM_ROOM), 1.0 + RPM_CATCH_UP_S * rpm / PERIOD_S)


@dataclass(frozen=True)
class BudgetRates:
    """The rates a store meters: the budget's limits less its margin, and their buckets' shape.

    Attributes:
        rpm: requests per minute to aim at (None: unlimited).
        tpm: tokens per minute to aim at (None: unlimited).
        request_room: room of the requests bucket, in requests (:func:`request_room`).
        token_depth_s: depth of the tokens bucket, seconds of tokens (:data:`TPM_DEPTH_S`).
        window_requests: requests a provider's window of :data:`WINDOW_S` admits
            (None: not logged, the requests bucket holds them; see :meth:`of`).
        window_tokens: tokens a provider's window admits: the limit itself, no
            margin (None: unlimited).
    """

    rpm: float | None = None
    tpm: float | None = None
    request_room: float = RPM_ROOM
    token_depth_s: float = TPM_DEPTH_S
    window_requests: float | None = None
    window_tokens: float | None = None

    @classmethod
    def of(cls, rpm: float | None, tpm: float | None, margin: float) -> BudgetRates:
        """Return the rates of limits ``rpm`` and ``tpm`` with ``margin`` of each left unused."""
        share = 1.0 - margin
        paced = rpm * share if rpm else None
        return cls(
            rpm=paced,
            tpm=tpm * share if tpm else None,
            request_room=request_room(paced) if paced else RPM_ROOM,
            # Requests are not logged: paced below the limit, the requests bucket
            # never lets a window count more than it admits (a window holds the
            # rate plus one whole request), and the log's guard and its late
            # sends cost the 10%-fault rows 5% on the loaded machine.
            window_requests=None,
            window_tokens=tpm * WINDOW_S / PERIOD_S if tpm else None,
        )

    def window_log(self) -> WindowLog | None:
        """A log of the provider's window for these limits (None: no limit)."""
        if not (self.window_requests or self.window_tokens):
            return None
        return WindowLog(
            self.window_requests, self.window_tokens, window_s=WINDOW_S, guard_s=WINDOW_GUARD_S
        )


class BudgetStore(Protocol):
    """Where a budget's rates live: this process (:class:`MemoryBudgetStore`) or Redis.

    A store meters one request and its tokens per call: the budget calls
    :meth:`reserve` before the request is sent and :meth:`adjust` once its
    usage is known; :meth:`pause` tells whoever else shares the store to hold
    their requests after a 429 (the budget pauses its own process itself).
    """

    async def connect(self) -> None:
        """Get ready for calls (a shared store connects and checks it is reachable)."""
        ...

    async def aclose(self) -> None:
        """Release what :meth:`connect` took."""
        ...

    async def reserve(self, tokens: float) -> object:
        """Wait until one request and ``tokens`` tokens fit the rates, and take them.

        Returns:
            the request's booking in the store, to pass to :meth:`adjust`.
        """
        ...

    async def adjust(self, difference: float, booking: object = None) -> None:
        """Charge (> 0) or refund (< 0) tokens a call used beyond (or short of) its charge.

        ``booking`` is what :meth:`reserve` returned for the call's request.
        """
        ...

    def pause(self, seconds: float) -> None:
        """Hold every process sharing the store for ``seconds``: a 429 of the limit."""
        ...

    def hold(self, seconds: float) -> None:
        """Hold this process's requests waiting in the store for ``seconds``: a limit spent."""
        ...

    def set_pace(self, pace: float) -> None:
        """Meter at ``pace`` (0 to 1) of the rates from now on: the budget's adaptive pacing."""
        ...


class MemoryBudgetStore:
    """The rates metered in this process: a leaky bucket of requests and one of tokens.

    Args:
        rates: the rates to meter.

    Attributes:
        rates: the rates metered.
        requests: the requests bucket (None: no RPM limit).
        tokens: the tokens bucket (None: no TPM limit).
        window: the log of the provider's window (None: no limit).
    """

    def __init__(self, rates: BudgetRates) -> None:
        self.rates = rates
        self.requests: LeakyBucket | None = None
        self.tokens: LeakyBucket | None = None
        if rates.rpm:
            self.requests = LeakyBucket(rates.request_room, rates.rpm / PERIOD_S)
        if rates.tpm:
            per_s = rates.tpm / PERIOD_S
            # a deep bucket (a refund must fit), but a waiter woken late does not
            # let the next ones through at once: RPM_CATCH_UP_S, as for requests
            self.tokens = LeakyBucket(per_s * rates.token_depth_s, per_s, catch_up_s=RPM_CATCH_UP_S)
        self.window = rates.window_log()
        self._primed = False

    async def connect(self) -> None:
        """Nothing to do in memory."""

    async def aclose(self) -> None:
        """Nothing to release in memory."""

    async def reserve(self, tokens: float) -> Booking | None:
        """Wait until one request and ``tokens`` tokens fit the buckets and the window; take them.

        Returns:
            the request's booking in the window log (None: no limit).
        """
        await self.prime()
        if self.requests is not None:
            await self.requests.acquire()
        if self.tokens is not None:
            await self.tokens.charge(tokens)
        if self.window is None:
            return None
        tokens = tokens if self.tokens is not None else 0.0
        loop = asyncio.get_running_loop()
        # Counted when it goes: a wake-up made late by a busy loop is counted late.
        while (wait := self.window.wait(tokens, loop.time())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        return self.window.add(tokens, loop.time())

    async def prime(self) -> None:
        """Fill the buckets on first use, so a run does not start with a burst.

        Empty buckets have room at once, so these acquires do not wait. The RPM
        bucket keeps room for one request: the catch-up after a late wake-up.
        """
        if self._primed:
            return
        self._primed = True
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(self.tokens.capacity)

    async def adjust(self, difference: float, booking: object = None) -> None:
        """Charge (> 0) or refund (< 0) tokens in the tokens bucket and ``booking``'s window."""
        if self.tokens is None:
            return
        if self.window is not None and isinstance(booking, Booking):
            self.window.settle(booking, difference)
        if difference > 0:
            await self.tokens.charge(difference)
        elif difference < 0:
            self.tokens.refund(-difference)

    def pause(self, seconds: float) -> None:
        """Hold the requests waiting here: no other process shares this store."""
        self.hold(seconds)

    def hold(self, seconds: float) -> None:
        """Hold both buckets for ``seconds``; their waiters keep their places in line."""
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.hold(seconds)

    def set_pace(self, pace: float) -> None:
        """Drain both buckets at ``pace`` of the rates from now on."""
        if self.requests is not None and self.rates.rpm:
            self.requests.rate = self.rates.rpm / PERIOD_S * pace
        if self.tokens is not None and self.rates.tpm:
            self.tokens.rate = self.rates.tpm / PERIOD_S * pace
