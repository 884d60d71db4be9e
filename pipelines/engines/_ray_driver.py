"""The Ray driver's loop: items sent to workers within their windows, each record yielded once.

A worker whose call failed with ``RayActorError`` gets no new item until a
probe (its ``start``) answers: Ray restarts it meanwhile, and items sent to it
then would fail too and count as losses. An item in flight on
:data:`MAX_WORKER_LOSSES` dying workers becomes an error record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any

from lc_async_pipelines.engines._ray_worker import (
    failed_record,
    lost_record,
    record_from_dict,
    start_error,
)
from lc_async_pipelines.errors import WorkersLost
from lc_async_pipelines.runner.fresh import fresh_items
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record

__all__ = ["MAX_WORKER_LOSSES", "Dispatch", "Flight", "drive"]

MAX_WORKER_LOSSES = 3
"""Dying workers an item may be in flight on before it becomes an error record."""


@dataclass
class Flight:
    """A call in flight: an item sent to a worker, or a probe of a worker that failed."""

    worker: int
    item: Item | None = None
    ref: Any = None


async def probe_worker(actor: Any, delay: float) -> str:
    """Ask a worker that failed whether it is back (Ray queues the call while it restarts)."""
    await asyncio.sleep(delay)
    description: str = await actor.start.remote()
    return description


class Dispatch:
    """What the driver knows: items still to send, calls in flight, each worker's load and health.

    Completed calls land in :attr:`done` in completion order, so the driver
    wakes once a record, not for a wait over every call in flight.
    """

    def __init__(
        self, ray: Any, actors: list[Any], window: int, items: Iterable[Item], options: RunOptions
    ) -> None:
        self.ray = ray
        self.errors = ray.exceptions
        self.actors = actors
        self.window = window
        self.stop = options.stop
        self.source = fresh_items(items, options.skip, options.limit)
        self.exhausted = False
        self.again: deque[Item] = deque()  # items whose worker died under them: sent first
        self.losses: dict[str, int] = {}
        self.load = [0] * len(actors)
        self.alive = [True] * len(actors)
        self.ready = [True] * len(actors)
        self.flights: dict[asyncio.Future[Any], Flight] = {}
        self.done: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()

    def stopping(self) -> bool:
        """True once the stop event is set: no new item is sent."""
        return self.stop is not None and self.stop.is_set()

    def track(self, future: asyncio.Future[Any], flight: Flight) -> None:
        """Follow a call in flight; its end goes into :attr:`done`."""
        self.flights[future] = flight
        future.add_done_callback(self.done.put_nowait)

    def next_item(self) -> Item | None:
        """The next item to send: one whose worker died first, else the input's next."""
        if self.stopping():
            return None
        if self.again:
            return self.again.popleft()
        item = next(self.source, None)
        self.exhausted = item is None
        return item

    def send_items(self) -> None:
        """Send items to the least loaded ready workers until every window is full."""
        while True:
            free = [
                n for n in range(len(self.actors)) if self.ready[n] and self.load[n] < self.window
            ]
            if not free:
                return
            item = self.next_item()
            if item is None:
                return
            n = min(free, key=self.load.__getitem__)
            ref = self.actors[n].run.remote(item.id, item.line, item.input, item.error)
            self.track(asyncio.wrap_future(ref.future()), Flight(n, item, ref))
            self.load[n] += 1

    def probe(self, n: int, delay: float = 0.0) -> None:
        """Hold worker ``n`` back until a probe answers (one probe at a time)."""
        self.ready[n] = False
        if not any(f.worker == n and f.item is None for f in self.flights.values()):
            self.track(asyncio.ensure_future(probe_worker(self.actors[n], delay)), Flight(n))

    def busy(self) -> bool:
        """True while items are in flight, or items are still to come and calls are out."""
        if any(self.load):  # items in flight
            return True
        waiting = bool(self.again) or not self.exhausted
        return bool(self.flights) and waiting and not self.stopping()

    async def finished_calls(self, wait_s: float | None) -> list[asyncio.Future[Any]] | None:
        """Wait for the next finished call; return it and any others done; None after ``wait_s``."""
        try:
            async with asyncio.timeout(wait_s):
                finished = [await self.done.get()]
        except TimeoutError:
            return None
        while not self.done.empty():
            finished.append(self.done.get_nowait())
        return finished

    def settle(self, future: asyncio.Future[Any]) -> Record | None:
        """Take in one finished call; return the record it ends with, if any.

        Raises:
            WorkersLost: every worker died past its restarts.
            PipelinesError: no worker can build its session any more.
        """
        flight = self.flights.pop(future, None)
        if flight is None:  # the stop event
            return None
        n, item = flight.worker, flight.item
        if item is not None:
            self.load[n] -= 1
        try:
            data = future.result()
        except self.errors.RayTaskError as exc:
            return self._worker_raised(n, item, exc)
        except (self.errors.RayActorError, self.errors.ObjectLostError) as exc:
            return self._worker_lost(n, item, exc)
        if item is None:
            self.ready[n] = self.alive[n]  # back after a restart
            return None
        self.losses.pop(item.id, None)
        return record_from_dict(data)

    def _worker_raised(self, n: int, item: Item | None, exc: Any) -> Record | None:
        if item is not None:  # the worker raised instead of answering
            return failed_record(item, exc.cause)
        self.alive[n] = False  # restarted, but its session cannot be built
        if not any(self.alive):
            raise start_error(exc.cause) from None
        return None

    def _worker_lost(self, n: int, item: Item | None, exc: BaseException) -> Record | None:
        if isinstance(exc, self.errors.ActorDiedError):
            self.alive[n] = self.ready[n] = False  # past its restarts
            if not any(self.alive):
                msg = f"all {len(self.alive)} Ray workers died past their restarts"
                raise WorkersLost(msg) from exc
        else:
            self.probe(n, delay=0.0 if item is not None else 0.5)
        if item is None:
            return None
        self.losses[item.id] = self.losses.get(item.id, 0) + 1
        if self.losses[item.id] >= MAX_WORKER_LOSSES:
            return lost_record(item, exc, self.losses.pop(item.id))
        self.again.append(item)
        return None

    def cancel_all(self) -> None:
        """Cancel every call still in flight (their items leave no record)."""
        for future, flight in self.flights.items():
            future.cancel()
            if flight.ref is not None:
                with contextlib.suppress(Exception):
                    self.ray.cancel(flight.ref)


async def drive(
    ray: Any,
    actors: list[Any],
    window: int,
    items: Iterable[Item],
    options: RunOptions,
) -> AsyncGenerator[Record, None]:
    """Send items to workers within their windows; yield each item's record once.

    ``options.stop`` sends no new item and gives those in flight
    ``options.grace_s`` seconds; then they are cancelled and leave no record.
    """
    dispatch = Dispatch(ray, actors, window, items, options)
    stop, grace_s = options.stop, options.grace_s
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[Any] | None = None
    if stop is not None:
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(dispatch.done.put_nowait)
    try:
        dispatch.send_items()
        deadline: float | None = None
        while dispatch.busy():
            if stop is not None and stop.is_set() and deadline is None:
                deadline = loop.time() + grace_s
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                break
            finished = await dispatch.finished_calls(timeout)
            if finished is None:
                break  # the grace is over: what is in flight leaves no record
            for future in finished:
                record = dispatch.settle(future)
                if record is not None:
                    yield record
            dispatch.send_items()
    finally:
        if stopping is not None and not stopping.done():
            stopping.cancel()
        dispatch.cancel_all()
