"""The lane planner: which lane each item goes to, from measured state and a clock; pure.

:func:`plan_lanes` takes the lanes' :class:`~.state.LaneState` (their price,
load and measured pace), the items not yet given to any lane, the clock's
``now`` and the deadline, and returns a :class:`LanePlan`. It reads no clock
and changes nothing, so a test gives it any moment it likes. Its rules:

1. **Cheapest first.** Lanes are ranked by estimated cost per item (ties:
   requests lanes before a batch lane, then the order given). Each new item
   goes to the cheapest lane expected to finish it before the deadline. A
   requests lane takes what its pace (measured, else assumed) finishes by
   then, after the load it already has. A batch lane takes items while its
   batch is expected to end in time (its measured progress extrapolated);
   before its pace is known, as many as the faster lanes could still take
   over after a first look at its progress (a tenth of the time left), so
   that rule 3 can always move them in time; and when the faster lanes
   cannot finish everything anyway, the items they would finish late.
   Items no lane finishes in time go to the fastest lane (the deadline is
   then missed, and the plan says so).
2. **The cap.** With ``max_cost_usd``, an item is given to a lane only while
   what is spent, plus the estimate of every item already given, plus its
   own stays within the cap; the others wait (and the cap, checked again as
   each item is given, stops the run when nothing can start).
3. **A batch that can no longer make it moves.** A batch's results come
   only when it ends, or is cancelled (OpenAI cancels whole batches, not
   lines; the lines already done are in the partial output). The batch is
   kept while it is expected to end before the deadline, or while, one tick
   from now, the faster lanes could still finish its unfinished lines (its
   measured progress continued to then) after their own load, with
   ``cancel_margin_s`` for the cancellation to land. Past that moment it is
   cancelled: its finished lines come back as results, the others as items
   for the faster lanes.
4. **A queue that can no longer make it moves, at the last tick.** A
   requests lane whose load it will not finish by the deadline less
   ``margin_s`` at its pace gives the excess of its queued items (never ones
   in flight) to the next lane that can take them, else to the fastest lane;
   but only once waiting one more tick would leave that lane too little
   time to finish them (after its own load, by the deadline less
   ``margin_s``). Until then they stay in the cheaper lane, which may yet
   prove faster than its first estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lc_async_pipelines.runner.lanes.state import LaneState

__all__ = ["LanePlan", "Move", "plan_lanes", "rank_lanes"]

_OBSERVE_SHARE = 0.1  # of the time left: how long a batch runs before its pace is trusted


@dataclass(frozen=True)
class Move:
    """Queued items of one requests lane given to another.

    Attributes:
        source: the lane they leave.
        target: the lane they go to.
        items: how many.
    """

    source: str
    target: str
    items: int


@dataclass
class LanePlan:
    """What to do now, and what is expected, from :func:`plan_lanes`.

    Attributes:
        assign: lane name -> new items to give it now.
        held: new items held back by the cap (given to no lane).
        moves: queued items to move between requests lanes.
        cancel: batch lanes whose batches are to be cancelled now (rule 3).
        finish: lane name -> expected end of its load, planner clock, s
            (lanes with items; a batch lane with no measured progress and no
            prior is left out: unknown).
        switch_by: batch lane name -> the latest time its unfinished lines can
            still move to faster lanes and keep the deadline, planner clock, s.
        items: lane name -> items it will hold after this plan (load plus new).
        cost_usd: the estimated cost of every item given to a lane and not done,
            new ones included, USD (unpriced lanes count 0).
        meets_deadline: every lane with items is expected to end by the deadline.
    """

    assign: dict[str, int] = field(default_factory=dict)
    held: int = 0
    moves: list[Move] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    finish: dict[str, float] = field(default_factory=dict)
    switch_by: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    meets_deadline: bool = True


def rank_lanes(lanes: Sequence[LaneState]) -> list[LaneState]:
    """Return ``lanes`` cheapest first (an unpriced lane last).

    Ties: a requests lane before a batch lane (its pace is known within
    seconds, a batch's only as it runs), then the order given.
    """
    return sorted(lanes, key=lambda lane: (lane.cost, lane.kind == "batch"))


def _crew(
    lanes: Sequence[LaneState], shared_rate: float | None, added: dict[str, int] | None = None
) -> tuple[float, float, float]:
    """The requests lanes that take items, together: (items a second, load, latency tail).

    Their paces add up to at most ``shared_rate`` (the run's budget, which
    they share); ``added`` counts items given to them in the plan being made.
    """
    crew = [lane for lane in lanes if lane.kind == "requests" and lane.accepts]
    rate = sum(lane.rate for lane in crew)
    if shared_rate is not None:
        rate = min(rate, shared_rate)
    load = sum(lane.load + (added or {}).get(lane.name, 0) for lane in crew)
    tail = max((lane.latency_s for lane in crew), default=0.0)
    return rate, float(load), tail


def _capacity(lane: LaneState, now: float, deadline: float) -> float:
    """Items requests lane ``lane`` can still take and finish by ``deadline``."""
    if not lane.accepts:
        return 0.0
    span = max(0.0, deadline - now - lane.latency_s)  # one started later ends late
    return max(0.0, math.floor(lane.rate * span) - lane.load)


def _batch_capacity(
    lane: LaneState,
    now: float,
    deadline: float,
    margin: float,
    crew: tuple[float, float, float],
    left: int,
) -> float:
    """Items batch lane ``lane`` can take, of the ``left`` still to place (may be infinite).

    On course (measured, or by its prior): any number. Before its pace is
    known: as many as the requests lanes (``crew``, which get the others)
    could still take over after a first look at its progress
    (:data:`_OBSERVE_SHARE` of the time left), so that rule 3 can always move
    them in time; when they cannot finish everything anyway, the items they
    would finish late.
    """
    if not lane.accepts:
        return 0.0
    finish = lane.batch_finish(now)
    if finish is None and lane.started_at is None and lane.prior_turnaround_s is not None:
        finish = now + lane.prior_turnaround_s
    if finish is not None:
        return math.inf if finish <= deadline - margin else 0.0
    rate, load, tail = crew
    if rate <= 0:
        return math.inf  # nowhere faster to go: the batch is the only way
    look = _OBSERVE_SHARE * max(0.0, deadline - now)
    span = max(0.0, deadline - margin - tail - now)  # the crew's working time
    load += lane.in_flight * (1.0 - (lane.progress or 0.0))
    if left + load <= rate * span:
        # Everything fits the crew by the deadline: the batch may take what
        # they could still do after the look (they do the rest meanwhile).
        return max(0.0, math.floor(min(float(left), rate * max(0.0, span - look) - load)))
    # Not even the crew finishes everything: the batch takes what they would
    # finish late anyway (it may yet be in time).
    return max(0.0, math.floor(min(float(left), left + load - rate * span)))


def _request_finish(lane: LaneState, now: float, extra: int = 0) -> float:
    rate = lane.rate
    load = lane.load + extra
    if load == 0:
        return now
    return now + load / rate + lane.latency_s if rate > 0 else math.inf


@dataclass
class _Ledger:
    """The plan as it is built: each lane's added items, and room left under the cap."""

    lanes: list[LaneState]
    added: dict[str, int]
    room_usd: float

    def give(self, lane: LaneState, count: int) -> int:
        """Add up to ``count`` items to ``lane`` within the cap; return how many."""
        if count <= 0:
            return 0
        if lane.cost_per_item_usd and math.isfinite(self.room_usd):
            count = min(count, max(0, math.floor(self.room_usd / lane.cost_per_item_usd + 1e-9)))
        if count:
            self.added[lane.name] = self.added.get(lane.name, 0) + count
            self.room_usd -= count * (lane.cost_per_item_usd or 0.0)
        return count


def plan_lanes(
    lanes: Sequence[LaneState],
    *,
    unassigned: int,
    now: float,
    deadline: float,
    spent_usd: float = 0.0,
    max_cost_usd: float | None = None,
    tick_s: float = 1.0,
    cancel_margin_s: float = 0.0,
    shared_rate: float | None = None,
    margin_s: float = 0.0,
) -> LanePlan:
    """Plan the lanes at ``now`` (see the module for the rules); a pure function.

    Args:
        lanes: every lane's state, in the order given by the user (ties of
            cost keep it).
        unassigned: items given to no lane yet (new, or back from a cancelled batch).
        now: the planner's clock, seconds (any monotonic origin).
        deadline: when every item should be done, same clock.
        spent_usd: spent so far, USD (against ``max_cost_usd``).
        max_cost_usd: the cap across lanes, USD (None: none).
        tick_s: seconds until the planner runs again.
        cancel_margin_s: seconds a batch's cancellation takes to hand back its
            lines (OpenAI: up to 10 minutes in ``cancelling``).
        shared_rate: items a second the requests lanes can do together (they
            share the run's budget, ``--rpm``); None: the sum of their paces.
        margin_s: seconds kept before the deadline when a requests lane's
            queue is judged (rule 4): its pace may yet drop.

    Returns:
        The :class:`LanePlan`.
    """
    ranked = rank_lanes(lanes)
    committed = sum(lane.load * (lane.cost_per_item_usd or 0.0) for lane in ranked)
    room = math.inf if max_cost_usd is None else max_cost_usd - spent_usd - committed
    ledger = _Ledger(ranked, {}, room)
    plan = LanePlan()
    crew = _crew(ranked, shared_rate)
    cancelled = _batches_to_cancel(ranked, now, deadline, tick_s, cancel_margin_s, crew, plan)
    live = [lane for lane in ranked if lane.name not in cancelled]
    _move_queues(live, now, deadline - margin_s, tick_s, plan)
    # the budget the requests lanes share: what it lets them finish, beyond their load
    shared = math.inf if shared_rate is None else shared_rate * max(0.0, deadline - now) - crew[1]
    left = unassigned
    for lane in live:
        if left <= 0:
            break
        if lane.kind == "batch":
            crew_now = _crew(live, shared_rate, ledger.added)
            capacity = _batch_capacity(lane, now, deadline, cancel_margin_s, crew_now, left)
        else:
            capacity = min(_capacity(lane, now, deadline) - _moved_in(plan, lane.name), shared)
        given = ledger.give(lane, int(min(left, max(0.0, capacity))))
        if lane.kind == "requests":
            shared -= given
        left -= given
    fastest = [lane for lane in reversed(live) if lane.accepts and lane.kind == "requests"]
    if left > 0 and fastest:  # nobody finishes them in time: the fastest lane, if the cap lets
        left -= ledger.give(fastest[0], left)
    if left > 0:  # the cap: what the cheapest lane can still take, late
        cheapest = [lane for lane in live if lane.accepts]
        if cheapest:
            left -= ledger.give(cheapest[0], left)
    plan.assign.update(ledger.added)
    plan.held = left
    _expect(ranked, now, deadline, plan)
    return plan


def _moved_in(plan: LanePlan, name: str) -> int:
    return sum(m.items for m in plan.moves if m.target == name) - sum(
        m.items for m in plan.moves if m.source == name
    )


def _batches_to_cancel(
    ranked: list[LaneState],
    now: float,
    deadline: float,
    tick_s: float,
    margin: float,
    crew: tuple[float, float, float],
    plan: LanePlan,
) -> set[str]:
    """Rule 3: the batch lanes to cancel now; each one's latest switch time in ``plan``."""
    cancelled: set[str] = set()
    rate, backlog, tail = crew
    for lane in ranked:
        if (
            lane.kind != "batch"
            or not lane.accepts
            or not lane.in_flight
            or lane.started_at is None
        ):
            continue  # a cancelled batch is not cancelled again
        if rate <= 0:
            continue  # nowhere faster to go: the batch is the only way
        done_rate = lane.batch_rate(now)
        undone_now = lane.in_flight * (1.0 - (lane.progress or 0.0))
        by = deadline - margin - tail
        latest = _latest_switch(undone_now, done_rate, backlog, rate, now, by)
        plan.switch_by[lane.name] = latest
        finish = lane.batch_finish(now)
        if finish is not None and finish <= deadline - margin:
            continue  # on course
        if now + tick_s <= latest:
            continue  # still time to wait one more tick
        rescue_now = now + margin + tail + (undone_now + backlog) / rate
        if rescue_now <= deadline:
            cancelled.add(lane.name)  # the last moment the deadline can be kept
            plan.cancel.append(lane.name)
            continue
        # Too late to keep the deadline either way: move only to what ends sooner
        # than the batch, once it had its first look (no progress by then: never).
        looked = now - lane.started_at >= _OBSERVE_SHARE * max(0.0, deadline - lane.started_at)
        if finish is None and looked and lane.progress is not None:
            finish = math.inf
        if finish is not None and rescue_now < finish:
            cancelled.add(lane.name)
            plan.cancel.append(lane.name)
    return cancelled


def _latest_switch(
    undone: float, done_rate: float, backlog: float, rate: float, now: float, by: float
) -> float:
    """The latest time t a batch's lines can move and the faster lanes still end by ``by``.

    At t the batch has ``undone - done_rate * (t - now)`` lines left (its pace
    continued), and the faster lanes, doing ``rate`` items a second, have
    worked off their own ``backlog`` as far as they could; the lines must be
    done by ``by``: ``t + (undone(t) + backlog(t)) / rate <= by``.
    """
    share = done_rate / rate
    if share >= 1:
        return math.inf  # the batch gains on any rescue: waiting never hurts

    def solve(left: float) -> float:
        return (by - (undone + left) / rate - now * share) / (1.0 - share)

    drained = solve(0.0)  # their backlog done by then
    if rate * (drained - now) >= backlog:
        return drained
    return solve(backlog)  # not done by then: all of it still ahead of the lines


def _move_queues(
    live: list[LaneState], now: float, deadline: float, tick_s: float, plan: LanePlan
) -> None:
    """Rule 4: queued items a requests lane will not finish by ``deadline`` go to a later lane.

    ``deadline`` is the run's less the margin. They move only when, one tick
    from now, the lane they go to could no longer finish them by then.
    """
    for index, lane in enumerate(live):
        later = [t for t in live[index + 1 :] if t.kind == "requests" and t.accepts]
        if lane.kind != "requests" or not lane.queued or not later:
            continue
        span = max(0.0, deadline - now - lane.latency_s)
        excess = math.ceil(lane.load - lane.rate * span)
        count = min(lane.queued, excess)
        if count <= 0:
            continue
        takers = [t for t in later if _capacity(t, now, deadline) - _moved_in(plan, t.name) > 0]
        target = takers[0] if takers else later[-1]
        if takers:
            room = _capacity(target, now, deadline) - _moved_in(plan, target.name)
            count = int(min(count, room))
            extra = count + _moved_in(plan, target.name)
            if _request_finish(target, now + tick_s, extra) < deadline:
                continue  # the target still finishes them if they move next tick
        plan.moves.append(Move(lane.name, target.name, count))


def _expect(ranked: list[LaneState], now: float, deadline: float, plan: LanePlan) -> None:
    """Fill the plan's expected items, finish times, cost and verdict."""
    cost = 0.0
    for lane in ranked:
        count = lane.load + plan.assign.get(lane.name, 0) + _moved_in(plan, lane.name)
        plan.items[lane.name] = count
        cost += count * (lane.cost_per_item_usd or 0.0)
        if count == 0:
            continue
        if lane.kind == "batch":
            finish = lane.batch_finish(now)
            if finish is None and lane.prior_turnaround_s is not None:
                finish = now + lane.prior_turnaround_s
            if lane.name in plan.cancel:
                finish = None
            if finish is not None:
                plan.finish[lane.name] = finish
                plan.meets_deadline &= finish <= deadline
            continue
        extra = count - lane.load
        finish = _request_finish(lane, now, extra)
        plan.finish[lane.name] = finish
        plan.meets_deadline &= finish <= deadline
    plan.cost_usd = cost
