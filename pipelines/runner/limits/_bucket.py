"""An async leaky bucket with weighted acquires, refunds and first-in, first-out waiters.

The bucket is the *leaky bucket as a meter*
(https://en.wikipedia.org/wiki/Leaky_bucket#As_a_meter), the form equivalent to
a token bucket: each acquire pours its amount into the bucket, which drains at
a constant rate, and an acquire waits while its amount would overflow the
bucket. That is the prior behaviour, aiolimiter's ``AsyncLimiter(max_rate,
time_period)`` (https://aiolimiter.readthedocs.io/), which the run budget used
before: a bucket of ``capacity`` draining ``rate`` per second fills, drains
and lets an amount through as ``AsyncLimiter(capacity, capacity / rate)`` did.
Unlike it, waiters are served in arrival order (the smallest amount went first
there, so a large acquire could be overtaken for ever by small ones), and
capacity charged on an estimate can be given back with :meth:`LeakyBucket.refund`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["LeakyBucket"]

# Relative slack on the capacity test. A waiter sleeps for exactly the time its
# amount needs to drain; rounding must not leave it a hair short and asleep again.
_SLACK = 1e-9


def _loop_time() -> float:
    """Return the running event loop's clock, in seconds."""
    return asyncio.get_running_loop().time()


@dataclass(eq=False)
class _Waiter:
    """One acquire waiting in line."""

    amount: float
    wake: asyncio.Future[None] | None = None  # set when its turn may have come
    nap: asyncio.Future[object] | None = None  # its sleep, while it sleeps at the head
    due: float | None = None  # when its last sleep, slept to the end, should have ended


class LeakyBucket:
    """A leaky bucket of ``capacity`` units draining at ``rate`` units per second.

    Units are whatever the caller meters: requests, tokens. The bucket starts
    empty, so the first ``capacity`` units pass at once; after that, units pass
    at ``rate`` per second. Waiters are served first in, first out: while one
    waits, later acquires queue behind it, however small.

    Args:
        capacity: room in the bucket, in units (requests, tokens); also the
            largest single :meth:`acquire`.
        rate: units drained per second.
        clock: returns the time in seconds, monotonic; by default the running
            event loop's ``time()``.
        sleep: an async sleep taking seconds, ``asyncio.sleep`` by default; a
            test injects a fake clock and sleep, as tenacity injects ``sleep``.
        catch_up_s: how late (seconds) a waiter may pass without pushing back
            the waiters behind it (default: no bound, the schedule is kept
            whatever the lateness). A waiter that slept for its turn and woke
            later than this leaves the bucket as if it had passed only
            ``catch_up_s`` late: the next ones follow it at the rate, rather
            than at once to catch up (which a provider counting per second
            would see as two requests in one slot).

    Raises:
        ValueError: ``capacity`` or ``rate`` is not positive.
    """

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        clock: Callable[[], float] = _loop_time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        catch_up_s: float = math.inf,
    ) -> None:
        if not (capacity > 0 and rate > 0):
            msg = f"capacity and rate must be positive, got {capacity} and {rate}"
            raise ValueError(msg)
        self._capacity = float(capacity)
        self._rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._level = 0.0
        self._checked_at = 0.0
        self._held_until = -math.inf
        self._catch_up_s = catch_up_s
        self._waiters: deque[_Waiter] = deque()

    @property
    def capacity(self) -> float:
        """Room in the bucket, in units; the largest single :meth:`acquire`."""
        return self._capacity

    @property
    def rate(self) -> float:
        """Units drained per second; set it to pace faster or slower from now on."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        if not rate > 0:
            msg = f"rate must be positive, got {rate}"
            raise ValueError(msg)
        self._leak()  # what drained so far drained at the old rate
        self._rate = float(rate)
        self._wake_head()  # its sleep was computed at the old rate

    @property
    def level(self) -> float:
        """Units in the bucket now, not yet drained."""
        self._leak()
        return self._level

    def has_capacity(self, amount: float = 1.0) -> bool:
        """Whether ``acquire(amount)`` would pass at once: room, and nobody waiting.

        Args:
            amount: units (requests, tokens).
        """
        return not self._waiters and self._fits(amount)

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units fit behind every earlier waiter, then pour them in.

        Args:
            amount: units (requests, tokens), from 0 to :attr:`capacity`.

        Raises:
            ValueError: ``amount`` is outside 0 to :attr:`capacity`.
        """
        if not 0 <= amount <= self._capacity:
            msg = f"amount must be between 0 and the capacity {self._capacity}, got {amount}"
            raise ValueError(msg)
        if not self._waiters and self._fits(amount):
            self._level += amount
            return
        waiter = _Waiter(amount)
        self._waiters.append(waiter)
        try:
            await self._wait_turn(waiter)
        finally:
            if waiter in self._waiters:  # cancelled while waiting
                head = self._waiters[0] is waiter
                self._waiters.remove(waiter)
                if head:
                    self._wake_head()

    async def charge(self, amount: float) -> None:
        """Acquire ``amount`` units in pieces no larger than the capacity.

        So any amount gets through, however large: each piece waits its turn.

        Args:
            amount: units (tokens); nothing is charged when it is not positive.
        """
        while amount > 0:
            piece = min(amount, self._capacity)
            await self.acquire(piece)
            amount -= piece

    def hold(self, seconds: float) -> None:
        """Let nothing through for ``seconds`` from now; waiters keep their places in line.

        A longer hold is never cut short by a shorter one. Nothing drains
        while held: when the hold ends, the waiters pass at the bucket's rate
        from the level it had, not in a burst from a bucket that emptied
        meanwhile (a provider's window that reset would take the burst on top
        of the paced requests).

        Args:
            seconds: how long to hold, seconds.
        """
        self._leak()  # what drained before the hold
        self._held_until = max(self._held_until, self._clock() + seconds)
        self._wake_head()  # its sleep may end inside the hold

    def refund(self, amount: float) -> None:
        """Take ``amount`` units charged earlier back out, waking the waiters it frees.

        The level never goes below empty.

        Args:
            amount: units (tokens) to give back.

        Raises:
            ValueError: ``amount`` is negative.
        """
        if amount < 0:
            msg = f"a refund cannot be negative, got {amount}"
            raise ValueError(msg)
        self._leak()
        self._level = max(0.0, self._level - amount)
        self._wake_head()

    async def _wait_turn(self, waiter: _Waiter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._waiters[0] is waiter and self._fits(waiter.amount):
                self._waiters.popleft()
                self._level += waiter.amount
                if waiter.due is not None and self._clock() - waiter.due > self._catch_up_s:
                    # Woken late: it leaves the bucket no emptier than catch_up_s allows.
                    floor = self._capacity - self._catch_up_s * self._rate
                    self._level = max(self._level, min(floor, self._capacity))
                self._wake_head()
                return
            if self._waiters[0] is not waiter:
                waiter.wake = loop.create_future()
                await waiter.wake  # until the waiters ahead are served
                continue
            # At the head: sleep until the amount has room; a refund cuts the sleep short.
            needed = self._level + waiter.amount - self._capacity
            seconds = max(needed / self._rate, self._held_until - self._clock())
            due = self._clock() + seconds
            task = asyncio.current_task()
            cancelling = task.cancelling() if task is not None else 0
            nap = waiter.nap = asyncio.ensure_future(self._sleep(seconds))
            waiter.due = None
            try:
                await nap
                waiter.due = due  # slept to the end (a refund's wake-up cancels the nap)
            except asyncio.CancelledError:
                if not nap.cancelled() or (task is not None and task.cancelling() > cancelling):
                    raise  # this task was cancelled, not just woken by _wake_head
            finally:
                waiter.nap = None

    def _wake_head(self) -> None:
        """Let the first waiter check the bucket again."""
        if not self._waiters:
            return
        head = self._waiters[0]
        if head.nap is not None:
            head.nap.cancel()
        elif head.wake is not None and not head.wake.done():
            head.wake.set_result(None)

    def _fits(self, amount: float) -> bool:
        self._leak()
        if self._checked_at < self._held_until:
            return False
        return self._level + amount <= self._capacity * (1 + _SLACK)

    def _leak(self) -> None:
        now = self._clock()
        since = max(self._checked_at, min(now, self._held_until))  # nothing drains while held
        drained = max(0.0, now - since) * self._rate
        self._level = max(0.0, self._level - drained)
        self._checked_at = now
