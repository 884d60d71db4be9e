"""A run over lanes: items given to lanes as the planner says, until each has its record.

:func:`run_lanes` is :func:`~lc_async_pipelines.runner.run_items` for a run
with a deadline: every ``tick_s`` it reads each lane's measured state, asks
:func:`~lc_async_pipelines.runner.lanes.planner.plan_lanes` what to do (pure),
and does it: new items to lanes (each admitted under the shared cap),
queued items moved, batches cancelled. Records come as items end, each with
its ``lane``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.costs.meter import item_text
from lc_async_pipelines.runner.fresh import fresh_items
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.lanes.cap import SharedCap
from lc_async_pipelines.runner.lanes.lane import Lane, LaneEvent
from lc_async_pipelines.runner.lanes.planner import LanePlan, plan_lanes
from lc_async_pipelines.runner.lanes.report import LaneReport
from lc_async_pipelines.runner.record import Record

__all__ = ["LaneOptions", "LaneRun", "cancel_margin", "tick_for"]

_OPENAI_CANCELLING_S = 600.0  # "cancelling for up to 10 minutes" (OpenAI's batch cancel reference)


def tick_for(deadline_s: float) -> float:
    """How often the planner runs for a deadline ``deadline_s`` away: 1/200 of it, 0.2 s to 60 s."""
    return min(60.0, max(0.2, deadline_s / 200))


def cancel_margin(deadline_s: float) -> float:
    """Seconds allowed for a batch's cancellation: OpenAI's 10 minutes, at most 5% of the time."""
    return min(_OPENAI_CANCELLING_S, 0.05 * deadline_s)


@dataclass(frozen=True)
class LaneOptions:
    """How :class:`LaneRun` runs.

    Attributes:
        deadline_s: seconds from the start by which every item should be done.
        max_cost_usd: the cap across lanes, USD (None: none).
        prior_usd: spent by earlier sessions of the run, USD (counted against the cap).
        tick_s: seconds between plans (None: :func:`tick_for` the deadline).
        cancel_margin_s: seconds a batch's cancellation may take (None: :func:`cancel_margin`);
            also the margin kept before the deadline when a requests lane's
            queue is judged (the planner's ``margin_s``).
        max_moves: times an item may come back from a lane before its error stands.
        limit: run at most this many distinct items (as ``RunOptions``).
        skip: ids already done (as ``RunOptions``).
        stop: when set, no new item is given to a lane; items in lanes get
            ``grace_s`` seconds, then are cancelled and leave no record.
        grace_s: seconds items in lanes get once ``stop`` is set.
        pinned: item id -> lane, given there before any plan (a resumed run's
            items that an earlier session gave its batch lane: their calls wait
            on that batch, so they are not paid twice).
        on_give: called with a lane's name and the items given to it (to
            record the batch lane's, for ``pinned``).
        shared_rate: items a second the requests lanes can do together (they
            share the run's budget); None: the sum of their paces.

    Raises:
        ConfigurationError: a value out of range (the message names it).
    """

    deadline_s: float
    max_cost_usd: float | None = None
    prior_usd: float = 0.0
    tick_s: float | None = None
    cancel_margin_s: float | None = None
    max_moves: int = 3
    limit: int | None = None
    skip: frozenset[str] = frozenset()
    stop: asyncio.Event | None = None
    grace_s: float = 30.0
    pinned: Mapping[str, str] = field(default_factory=dict)
    on_give: Callable[[str, Sequence[Item]], None] | None = None
    shared_rate: float | None = None

    def __post_init__(self) -> None:
        check_number("deadline_s", self.deadline_s, minimum=0, strict=True)
        check_number("max_cost_usd", self.max_cost_usd, minimum=0)
        check_number("tick_s", self.tick_s, minimum=0, strict=True)
        check_number("cancel_margin_s", self.cancel_margin_s, minimum=0)
        check_number("max_moves", self.max_moves, minimum=0, whole=True)
        check_number("grace_s", self.grace_s, minimum=0)


@dataclass
class _Pending:
    """Items given to no lane yet, and how often each came back."""

    pool: deque[Item]
    moves: dict[str, int] = field(default_factory=dict)


class LaneRun:
    """Items over ``lanes`` under a deadline and a cap; see the module.

    Args:
        lanes: the lanes, in the order given (ties of cost keep it). Each
            must emit into :meth:`emit`.
        options: the :class:`LaneOptions`.
        clock: seconds, monotonic (``time.monotonic``; a test's own).

    Attributes:
        cap: the :class:`SharedCap` (``capped`` once it stopped the run).
        report: the :class:`LaneReport`, filled as records come.
        last_plan: the last :class:`LanePlan` (None before the first).
    """

    def __init__(
        self,
        lanes: Sequence[Lane],
        options: LaneOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the run (see the class); nothing starts before :meth:`records`."""
        self.lanes = {lane.name: lane for lane in lanes}
        self.options = options
        self.clock = clock
        self.events: asyncio.Queue[LaneEvent] = asyncio.Queue()
        self.cap = SharedCap(options.max_cost_usd, self._spent, options.prior_usd)
        self.report = LaneReport(deadline_s=options.deadline_s)
        self.last_plan: LanePlan | None = None
        self._tick = options.tick_s or tick_for(options.deadline_s)
        self._margin = (
            options.cancel_margin_s
            if options.cancel_margin_s is not None
            else cancel_margin(options.deadline_s)
        )
        self._cancels: set[asyncio.Task[None]] = set()
        self._standard_usd = 0.0  # finished items' calls at the standard price
        self._tokens = 0  # their inputs' estimated tokens

    def estimate(self, lane: Lane, item: Item) -> float | None:
        """Estimated cost of ``item`` in ``lane``, USD (None: unpriced).

        One base for every lane: the standard price per input token measured
        over the items finished so far, in any lane (a record's ``cost_usd``
        plus its ``lane_saved_usd``), else an upper bound (the input and a
        whole ``max_tokens`` reply at the standard price), times the lane's
        price factor. Lanes' own measurements would not compare: a lane that
        has finished items knows their short replies, one that has not
        assumes the longest.
        """
        factor = lane.price_factor()
        if factor is None:
            return None
        tokens = max(1, estimate_tokens(item_text(item.input)))
        if self._tokens:
            return self._standard_usd / self._tokens * tokens * factor
        base = lane.standard_estimate(item)
        return None if base is None else base * factor

    def _learn(self, item: Item, record: Record) -> None:
        """Count a finished item's standard-price cost for :meth:`estimate`."""
        if record.ok and record.calls and record.cost_usd is not None:
            self._standard_usd += record.cost_usd + record.lane_saved_usd
            self._tokens += max(1, estimate_tokens(item_text(item.input)))

    def emit(self, event: LaneEvent) -> None:
        """Take an item's end from a lane (the lanes' ``emit``)."""
        self.events.put_nowait(event)

    def _spent(self) -> float:
        return sum(lane.meter.session_usd for lane in self.lanes.values() if lane.meter)

    async def records(self, items: Iterable[Item]) -> AsyncGenerator[Record, None]:
        """Run ``items`` over the lanes; yield each record as its item ends (see the module)."""
        opts = self.options
        pending = _Pending(deque(fresh_items(items, opts.skip, opts.limit)))
        left = len(pending.pool)
        start = self.clock()
        deadline = start + opts.deadline_s
        self._give_pinned(pending)
        try:
            while left > 0:
                if opts.stop is not None and opts.stop.is_set():
                    break
                self._plan_and_act(pending, deadline)
                if pending.pool and not self._load():
                    # nothing could be given (the cap), and nothing runs to free room
                    self.cap.capped = self.options.max_cost_usd is not None
                    break
                async for record in self._drain(pending):
                    left -= 1
                    self.report.add(record, self.clock() - start)
                    yield record
            if left > 0 and opts.stop is not None and opts.stop.is_set():
                async for record in self._grace(pending, left):
                    left -= 1
                    self.report.add(record, self.clock() - start)
                    yield record
        finally:
            self.report.held = len(pending.pool)
            self.report.left = left
            await self.aclose()

    async def _grace(self, pending: _Pending, left: int) -> AsyncGenerator[Record, None]:
        """After a stop: records of items already in lanes, for ``grace_s`` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.options.grace_s
        while left > 0 and self._load() and loop.time() < until:
            try:
                event = await asyncio.wait_for(self.events.get(), until - loop.time())
            except TimeoutError:
                return
            record = self._settle(event, pending, final=True)
            if record is not None:
                left -= 1
                yield record

    def _load(self) -> int:
        return sum(
            len(lane.tasks) + len(getattr(lane, "queue", ())) for lane in self.lanes.values()
        )

    async def _drain(self, pending: _Pending) -> AsyncGenerator[Record, None]:
        """Wait up to one tick for items' ends; yield the records that stand."""
        try:
            event = await asyncio.wait_for(self.events.get(), self._tick)
        except TimeoutError:
            return
        while True:
            record = self._settle(event, pending)
            if record is not None:
                yield record
            if self.events.empty():
                return
            event = self.events.get_nowait()

    def _settle(self, event: LaneEvent, pending: _Pending, *, final: bool = False) -> Record | None:
        """An item's end: its record, or None when it goes back to be given to another lane."""
        self.cap.release(event.item.id)
        self._learn(event.item, event.record)
        if event.back and not final:
            moves = pending.moves.get(event.item.id, 0) + 1
            pending.moves[event.item.id] = moves
            if moves <= self.options.max_moves and any(
                lane.state(self.clock()).accepts for lane in self.lanes.values()
            ):
                self.report.moved += 1
                pending.pool.append(event.item)
                return None
        return event.record

    def _plan_and_act(self, pending: _Pending, deadline: float) -> None:
        """Plan at the clock's now, and do what the plan says."""
        now = self.clock()
        # a typical item prices the lanes: the next one, else one in a lane
        sample = pending.pool[0] if pending.pool else self._any_item()
        states = [
            dataclasses.replace(
                lane.state(now),
                cost_per_item_usd=None if sample is None else self.estimate(lane, sample),
            )
            for lane in self.lanes.values()
        ]
        plan = plan_lanes(
            states,
            unassigned=len(pending.pool),
            now=now,
            deadline=deadline,
            spent_usd=self.cap.spent_usd,
            max_cost_usd=self.options.max_cost_usd,
            tick_s=self._tick,
            cancel_margin_s=self._margin,
            shared_rate=self.options.shared_rate,
            margin_s=self._margin,  # kept before the deadline when a queue is judged
        )
        self.last_plan = plan
        for name in plan.cancel:
            self.report.cancelled.append(name)
            task = asyncio.create_task(self.lanes[name].cancel())
            self._cancels.add(task)
            task.add_done_callback(self._cancels.discard)
        for move in plan.moves:
            taken = self.lanes[move.source].withdraw(move.items)
            self.report.moved += len(taken)
            for item in taken:
                self.cap.release(item.id)
            pending.pool.extendleft(reversed(taken))
            self._give(self.lanes[move.target], pending, len(taken))
        for name, count in plan.assign.items():
            self._give(self.lanes[name], pending, count)

    def _give_pinned(self, pending: _Pending) -> None:
        """Give each pinned item to its lane first (one that still takes items)."""
        pinned = self.options.pinned
        if not pinned:
            return
        for name, lane in self.lanes.items():
            mine = [item for item in pending.pool if pinned.get(item.id) == name]
            if not mine:
                continue
            others = [item for item in pending.pool if pinned.get(item.id) != name]
            pending.pool = deque(mine + others)
            self._give(lane, pending, len(mine))

    def _give(self, lane: Lane, pending: _Pending, count: int) -> None:
        """Give ``lane`` up to ``count`` items of the pool, each admitted under the cap."""
        given: list[Item] = []
        while pending.pool and len(given) < count:
            item = pending.pool[0]
            if not self.cap.admit(item.id, self.estimate(lane, item)):
                break
            given.append(pending.pool.popleft())
        if given:
            lane.submit(given)
            if self.options.on_give is not None:
                self.options.on_give(lane.name, given)

    def _any_item(self) -> Item | None:
        for lane in self.lanes.values():
            for item in lane.tasks.values():
                return item
        return None

    async def aclose(self) -> None:
        """Cancel what still runs in the lanes (no record: a resumed run does those items)."""
        for task in list(self._cancels):
            task.cancel()
        for lane in self.lanes.values():
            await lane.aclose()
