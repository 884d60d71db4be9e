"""The lane planner on a controlled clock: a pure function of lane states and ``now``."""

from __future__ import annotations

import dataclasses
import math

from lc_async_pipelines.runner.lanes import LaneState, plan_lanes

BATCH = LaneState("batch", kind="batch", cost_per_item_usd=0.5)
FLEX = LaneState("flex", cost_per_item_usd=0.5, prior_throughput=0.5)
STANDARD = LaneState("standard", cost_per_item_usd=1.0, prior_throughput=10.0)


def test_new_items_go_to_the_cheapest_lane_first_then_by_the_given_order() -> None:
    plan = plan_lanes([STANDARD, BATCH, FLEX], unassigned=500, now=0.0, deadline=100.0)
    # batch and flex cost the same: flex first (its pace is known), then the batch
    assert plan.assign == {"flex": 50, "batch": 450}
    assert plan.cost_usd == 250.0
    cheap_flex = dataclasses.replace(FLEX, cost_per_item_usd=0.4)
    plan = plan_lanes([STANDARD, cheap_flex], unassigned=500, now=0.0, deadline=100.0)
    assert plan.assign == {"flex": 50, "standard": 450}


def test_a_batch_whose_prior_misses_the_deadline_gets_nothing() -> None:
    slow = dataclasses.replace(BATCH, prior_turnaround_s=200.0)
    plan = plan_lanes([slow, FLEX, STANDARD], unassigned=500, now=0.0, deadline=100.0)
    assert plan.assign == {"flex": 50, "standard": 450}
    assert plan.meets_deadline


def test_items_no_lane_finishes_in_time_go_to_the_fastest_and_the_plan_says_late() -> None:
    plan = plan_lanes([FLEX, STANDARD], unassigned=2_000, now=0.0, deadline=100.0)
    assert plan.assign == {"flex": 50, "standard": 1_950}
    assert plan.finish["standard"] == 195.0
    assert not plan.meets_deadline


def test_the_cap_holds_across_lanes_and_holds_back_the_rest() -> None:
    plan = plan_lanes([FLEX, STANDARD], unassigned=500, now=0.0, deadline=100.0, max_cost_usd=100.0)
    # flex: 50 x $0.5 = $25; standard: what $75 buys, 75 items; 375 held
    assert plan.assign == {"flex": 50, "standard": 75}
    assert plan.held == 375
    loaded = dataclasses.replace(STANDARD, in_flight=40)  # $40 committed already
    plan = plan_lanes(
        [FLEX, loaded],
        unassigned=500,
        now=0.0,
        deadline=100.0,
        spent_usd=30.0,
        max_cost_usd=100.0,
    )
    assert plan.assign == {"flex": 50, "standard": 5}


def _batch_at(now: float, progress: float, items: int = 100) -> LaneState:
    return dataclasses.replace(BATCH, in_flight=items, progress=progress, started_at=0.0)


def test_a_batch_on_course_is_kept() -> None:
    plan = plan_lanes(
        [_batch_at(40.0, 0.5), FLEX, STANDARD], unassigned=0, now=40.0, deadline=100.0
    )
    assert plan.cancel == []
    assert plan.finish["batch"] == 80.0


def test_a_slow_batch_is_kept_while_the_faster_lanes_can_still_take_its_lines() -> None:
    # 10% in 20 s: it would end at 200 s; flex and standard do 10.5 items/s
    plan = plan_lanes(
        [_batch_at(20.0, 0.1), FLEX, STANDARD],
        unassigned=0,
        now=20.0,
        deadline=100.0,
        tick_s=1.0,
        cancel_margin_s=5.0,
    )
    assert plan.cancel == []
    assert 20.0 < plan.switch_by["batch"] < 100.0


def test_a_slow_batch_is_cancelled_at_the_last_tick_that_keeps_the_deadline() -> None:
    """Step the clock: the batch is cancelled once waiting a tick more would miss the deadline."""
    cancelled_at = None
    for tick in range(20, 100):
        now = float(tick)
        state = _batch_at(now, progress=now / 200.0)  # linear: 100% at 200 s
        plan = plan_lanes(
            [state, FLEX, STANDARD],
            unassigned=0,
            now=now,
            deadline=100.0,
            tick_s=1.0,
            cancel_margin_s=5.0,
        )
        if plan.cancel:
            cancelled_at = now
            break
    assert cancelled_at is not None
    # its unfinished lines, at both faster lanes' pace, still end by the deadline
    undone = 100 * (1 - cancelled_at / 200.0)
    assert cancelled_at + 5.0 + undone / 10.5 <= 100.0
    # and not much earlier: one more tick would not have left room
    assert cancelled_at + 1.0 + 5.0 + (undone - 0.5) / 10.5 > 100.0 - 1.0


def test_no_faster_lane_keeps_the_batch_whatever_its_pace() -> None:
    plan = plan_lanes([_batch_at(90.0, 0.1)], unassigned=0, now=90.0, deadline=100.0)
    assert plan.cancel == []


def test_a_queue_the_lane_cannot_finish_moves_its_excess_at_the_last_tick() -> None:
    flex = dataclasses.replace(FLEX, queued=60, in_flight=4, throughput=0.5)
    slow = dataclasses.replace(STANDARD, throughput=1.0)
    # at 56 s flex finishes 22 of its 64 by the deadline; standard, 1 item/s, would
    # still finish the other 42 if they moved a tick later (57 + 42 < 100): they stay
    plan = plan_lanes([flex, slow], unassigned=0, now=56.0, deadline=100.0, tick_s=1.0)
    assert plan.moves == []
    # at 57 s a tick later would be too late (58 + 43 > 100): the 43 move now
    plan = plan_lanes([flex, slow], unassigned=0, now=57.0, deadline=100.0, tick_s=1.0)
    assert [(m.source, m.target, m.items) for m in plan.moves] == [("flex", "standard", 43)]
    assert plan.items == {"flex": 21, "standard": 43}
    assert plan.meets_deadline


def test_a_queue_is_judged_against_the_deadline_less_the_margin() -> None:
    flex = dataclasses.replace(FLEX, queued=60, in_flight=4, throughput=0.5)
    slow = dataclasses.replace(STANDARD, throughput=1.0)
    plan = plan_lanes([flex, slow], unassigned=0, now=50.0, deadline=100.0, tick_s=1.0)
    assert plan.moves == []
    # 10 s kept: flex finishes 20 by 90 s; standard takes the 40 it can by then, now
    plan = plan_lanes(
        [flex, slow], unassigned=0, now=50.0, deadline=100.0, tick_s=1.0, margin_s=10.0
    )
    assert [(m.source, m.target, m.items) for m in plan.moves] == [("flex", "standard", 40)]


def test_a_lane_pace_starts_from_its_first_items_shrunk_toward_the_prior() -> None:
    lane = LaneState("flex", prior_throughput=10.0, window=100, busy_s=3.0, first_done_s=2.0)
    assert lane.rate == 10.0  # nothing finished: the prior
    # 5 items in 2 s each: 100 in flight / 2 s = 50 items/s on their own; with the
    # prior (0.1 s an item) counting as 5 items: 10 / (5 x 0.02 + 5 x 0.1) = 16.7
    first = dataclasses.replace(lane, done=5, mean_latency_s=2.0)
    assert math.isclose(first.rate, 10 / 0.6)
    # 95 items: (95 + 5) / (95 x 0.02 + 5 x 0.1) = 41.7, near their own pace
    more = dataclasses.replace(lane, done=95, mean_latency_s=2.0)
    assert math.isclose(more.rate, 100 / 2.4)
    assert dataclasses.replace(first, throughput=3.0).rate == 3.0  # given: trusted


def test_a_lane_measured_pace_leaves_out_the_time_before_its_first_item_ended() -> None:
    # 101 finished; busy 4 s, the first ended at 2 s: 100 items in the last 2 s
    lane = LaneState("flex", done=101, window=100, busy_s=4.0, first_done_s=2.0, mean_latency_s=2.0)
    assert lane.rate == 50.0  # not 101 / 4 s = 25: nothing could end before 2 s


def _simulate(batch_turnaround_s: float, items: int = 300, deadline: float = 100.0):
    """A controlled-clock world for the planner: lines, queues and paces as the states say."""
    batch_items = 0
    batch_started: float | None = None
    batch_cancelled = False
    queues = {"flex": 0.0, "standard": 0.0}
    rates = {"flex": 0.5, "standard": 10.0}
    got = {"batch": 0.0, "flex": 0.0, "standard": 0.0}
    unassigned = items
    now = 0.0
    finished_at = math.inf
    while now < 300.0:
        progress = None
        if batch_started is not None and batch_items:
            progress = min(1.0, (now - batch_started) / batch_turnaround_s)
        states = [
            LaneState(
                "batch",
                kind="batch",
                cost_per_item_usd=0.5,
                in_flight=batch_items,
                progress=progress,
                started_at=batch_started if batch_items else None,
                accepts=not batch_cancelled,
            ),
            LaneState(
                "flex",
                cost_per_item_usd=0.5,
                queued=math.ceil(queues["flex"]),
                prior_throughput=rates["flex"],
            ),
            LaneState(
                "standard",
                cost_per_item_usd=1.0,
                queued=math.ceil(queues["standard"]),
                prior_throughput=rates["standard"],
            ),
        ]
        plan = plan_lanes(
            states,
            unassigned=unassigned,
            now=now,
            deadline=deadline,
            tick_s=1.0,
            cancel_margin_s=2.0,
        )
        for move in plan.moves:
            queues[move.source] -= move.items
            queues[move.target] += move.items
        for name, count in plan.assign.items():
            unassigned -= count
            if name == "batch":
                batch_items += count
                batch_started = now if batch_started is None else batch_started
            else:
                queues[name] += count
        if plan.cancel:  # the lines done come back as results, the others as new items
            done = int(batch_items * (progress or 0.0))
            got["batch"] += done
            unassigned += batch_items - done
            batch_items, batch_cancelled = 0, True
        if progress is not None and progress >= 1.0 and batch_items:
            got["batch"] += batch_items
            batch_items = 0
        for name in queues:
            step = min(queues[name], rates[name])
            queues[name] -= step
            got[name] += step
        now += 1.0
        if unassigned == 0 and batch_items == 0 and all(q <= 0 for q in queues.values()):
            finished_at = now
            break
    return got, finished_at, batch_cancelled


def test_a_batch_too_slow_for_the_deadline_moves_its_items_to_flex_then_standard() -> None:
    got, finished_at, cancelled = _simulate(batch_turnaround_s=150.0)
    assert cancelled
    assert finished_at <= 100.0
    assert got["batch"] > 0 and got["flex"] > 0 and got["standard"] > 0
    assert round(sum(got.values())) == 300
    # most items at the cheap price: batch and flex did more than standard
    assert got["batch"] + got["flex"] > got["standard"]


def test_a_batch_in_time_keeps_every_item() -> None:
    got, finished_at, cancelled = _simulate(batch_turnaround_s=60.0)
    assert not cancelled
    # flex takes what it finishes in time (its queue rounded to whole items), the batch the rest
    assert got["batch"] == 250
    assert got["batch"] + got["flex"] >= 299
    assert finished_at <= 100.0


def test_a_batch_of_unknown_pace_gets_what_the_faster_lanes_could_take_over() -> None:
    # standard does 10 items/s: 1,000 by the deadline, 900 after a first look at the
    # batch (a tenth of the time); the batch may hold 900, standard does the rest meanwhile
    plan = plan_lanes([BATCH, STANDARD], unassigned=1_000, now=0.0, deadline=100.0)
    assert plan.assign == {"batch": 900, "standard": 100}
    assert plan.meets_deadline


def test_items_too_many_for_the_faster_lanes_go_to_the_batch_which_may_make_it() -> None:
    plan = plan_lanes([BATCH, FLEX, STANDARD], unassigned=2_000, now=0.0, deadline=100.0)
    # flex takes its 50 first, standard the 1,000 it finishes; the 950 it would not, the batch
    assert plan.assign == {"flex": 50, "batch": 950, "standard": 1_000}


def test_a_batch_given_what_the_faster_lanes_cannot_do_waits_for_its_first_look() -> None:
    slow = dataclasses.replace(STANDARD, prior_throughput=0.1, in_flight=10)
    batch = dataclasses.replace(BATCH, in_flight=500, started_at=0.0)
    # nothing polled yet: the faster lanes could never take its 500 lines; it is kept
    plan = plan_lanes([batch, slow], unassigned=0, now=5.0, deadline=100.0)
    assert plan.cancel == []
    # polled, and nothing done after its first look (a tenth of the time): moved
    polled = dataclasses.replace(batch, progress=0.0)
    assert plan_lanes([polled, slow], unassigned=0, now=5.0, deadline=100.0).cancel == []
    assert plan_lanes([polled, slow], unassigned=0, now=20.0, deadline=100.0).cancel == ["batch"]
