"""A lane per item: each item to the cheapest way that still meets a deadline, under a cap.

A *lane* is a way to run items (:class:`Lane`): the standard tier
(:class:`RequestLane`, under the run's budget), the flex tier (a
:class:`RequestLane` on a ``service_tier="flex"`` model) or the provider's
Batch API (:class:`BatchLane`). Each has a price per item and a measured
pace (:class:`LaneState`). :func:`plan_lanes` is the planner, a pure
function of those states and a clock; :class:`LaneRun` runs items over the
lanes as it says, with one ``max_cost_usd`` cap across them
(:class:`SharedCap`), and reports which lane did what (:class:`LaneReport`).
"""

from lc_async_pipelines.runner.lanes.batch_lane import BatchControl, BatchLane
from lc_async_pipelines.runner.lanes.cap import SharedCap
from lc_async_pipelines.runner.lanes.lane import Lane, LaneEvent
from lc_async_pipelines.runner.lanes.planner import LanePlan, Move, plan_lanes, rank_lanes
from lc_async_pipelines.runner.lanes.report import LaneReport
from lc_async_pipelines.runner.lanes.request_lane import RequestLane
from lc_async_pipelines.runner.lanes.run import LaneOptions, LaneRun, cancel_margin, tick_for
from lc_async_pipelines.runner.lanes.state import LaneKind, LaneState

__all__ = [
    "BatchControl",
    "BatchLane",
    "Lane",
    "LaneEvent",
    "LaneKind",
    "LaneOptions",
    "LanePlan",
    "LaneReport",
    "LaneRun",
    "LaneState",
    "Move",
    "RequestLane",
    "SharedCap",
    "cancel_margin",
    "plan_lanes",
    "rank_lanes",
    "tick_for",
]
