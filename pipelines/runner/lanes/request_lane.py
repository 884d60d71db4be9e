"""A lane of single requests (the standard tier, the flex tier): :class:`RequestLane`."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.lanes.lane import Lane, LaneEvent
from lc_async_pipelines.runner.lanes.state import LaneState
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record

__all__ = ["RequestLane"]


class RequestLane(Lane):
    """Items sent one request at a time, ``window`` in flight, in the order given.

    Its pace is measured: the lane reports its busy seconds, when its first
    item finished and its items' mean latency, and
    :attr:`~.state.LaneState.rate` makes a pace of them (from the first
    finished items, shrunk toward ``prior_throughput``, items a second from
    ``--rpm`` or ``window`` items per 2 s; then items over busy seconds). A
    flex lane's 429s and its retries slow it, and so its measured pace (the
    issue's "flex latency and 429 share").

    Args:
        name: see :class:`Lane`.
        chain: see :class:`Lane`.
        options: see :class:`Lane`.
        emit: see :class:`Lane`.
        clock: see :class:`Lane`.
        window: items in flight at once.
        prior_throughput: items a second assumed before any is measured.
        prior_latency_s: seconds an item is assumed to take, start to end,
            before 5 have finished (then: the 90th percentile of the last 200).
        config: see :class:`Lane`.
    """

    def __init__(
        self,
        name: str,
        chain: Runnable[Any, Any],
        options: RunOptions,
        emit: Callable[[LaneEvent], None],
        clock: Callable[[], float],
        *,
        window: int,
        prior_throughput: float,
        prior_latency_s: float = 0.0,
        config: RunnableConfig | None = None,
    ) -> None:
        """Set up the lane (see the class)."""
        super().__init__(name, chain, options, emit, clock, config)
        self.window = window
        self.prior_throughput = prior_throughput
        self.prior_latency_s = prior_latency_s
        self._latencies: deque[float] = deque(maxlen=200)
        self.queue: deque[Item] = deque()
        self._busy_since: float | None = None
        self._busy_s = 0.0
        self._first_done_s: float | None = None
        self._latency_sum = 0.0

    def state(self, now: float) -> LaneState:
        """See :meth:`Lane.state`."""
        return LaneState(
            name=self.name,
            kind="requests",
            queued=len(self.queue),
            in_flight=len(self.tasks),
            done=self.done,
            prior_throughput=self.prior_throughput,
            window=self.window,
            busy_s=self._busy(now),
            first_done_s=self._first_done_s,
            mean_latency_s=self._latency_sum / self.done if self.done else None,
            latency_s=self._latency(),
        )

    def _busy(self, now: float) -> float:
        return self._busy_s + (now - self._busy_since if self._busy_since is not None else 0.0)

    def _latency(self) -> float:
        """The 90th percentile of the last items' time from start to end, else the prior."""
        if len(self._latencies) < 5:
            return self.prior_latency_s
        ordered = sorted(self._latencies)
        return ordered[int(0.9 * (len(ordered) - 1))]

    def submit(self, items: Sequence[Item]) -> None:
        """See :meth:`Lane.submit`; they start as the window has room."""
        self.queue.extend(items)
        self._pump()

    def withdraw(self, count: int) -> list[Item]:
        """Take back up to ``count`` queued items, the last given first."""
        taken = [self.queue.pop() for _ in range(min(count, len(self.queue)))]
        taken.reverse()
        return taken

    def finished(self, item: Item, record: Record) -> None:
        """Hand the record on and start the next queued item."""
        took = record.latency_s + record.queued_s
        self._latencies.append(took)
        self._latency_sum += took
        if self._first_done_s is None:
            self._first_done_s = self._busy(self.clock())
        super().finished(item, record)
        self._pump()

    def _pump(self) -> None:
        while self.queue and len(self.tasks) < self.window:
            if self._busy_since is None:
                self._busy_since = self.clock()
            self.start(self.queue.popleft())
        if not self.tasks and not self.queue and self._busy_since is not None:
            self._busy_s += self.clock() - self._busy_since
            self._busy_since = None

    async def aclose(self) -> None:
        """Drop the queue; cancel the items in flight."""
        self.queue.clear()
        await super().aclose()
        await asyncio.sleep(0)
