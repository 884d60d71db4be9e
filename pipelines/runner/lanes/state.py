"""What a lane has measured, as the planner reads it: :class:`LaneState`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["LaneKind", "LaneState"]

LaneKind = Literal["batch", "requests"]

_PRIOR_WEIGHT = 5.0  # items the prior pace counts as, against a lane's first measured ones


@dataclass(frozen=True)
class LaneState:
    """One lane at one moment of the planner's clock: its price, load and measured pace.

    A *requests* lane (the standard tier, the flex tier) answers items one by
    one, ``window`` at a time: its pace (:attr:`rate`) is items a second,
    estimated from what it measured (see :attr:`rate`). A *batch* lane
    hands its items to the provider's Batch API: its pace is the share of its
    lines the provider reports done (``progress``, from the batch's
    ``request_counts``) since ``started_at``; results come only when the
    batch ends or is cancelled.

    Attributes:
        name: the lane's name (``"batch"``, ``"flex"``, ``"standard"``).
        kind: ``"batch"`` or ``"requests"``.
        cost_per_item_usd: estimated cost of one item here, USD (None: unpriced).
        queued: items given to the lane and not started (requests lanes; a
            batch lane starts what it is given).
        in_flight: items started and not finished (a batch lane: its items
            waiting on batches).
        done: items finished here.
        throughput: items per second, measured and trusted as is (None: the
            pace is estimated from the fields below, see :attr:`rate`).
        prior_throughput: items per second assumed until measured (requests lanes).
        window: items a requests lane runs at once (0: unknown).
        busy_s: seconds the lane had work so far.
        first_done_s: ``busy_s`` when its first item finished (None: none yet).
        mean_latency_s: mean seconds its finished items took, start to end
            (waits for the budget included; None: none finished).
        progress: a batch lane's share of lines done, 0 to 1, over its batches
            in progress (None: no batch in progress).
        started_at: when the batch in progress was created, planner clock, s.
        prior_turnaround_s: how long a batch is assumed to take before its
            progress is measured (None: assume it keeps the deadline; the
            planner still moves its lines in time if it does not).
        accepts: the lane takes new items (a cancelled batch lane does not).
        latency_s: how long an item takes once started, at the slow end
            (requests lanes: the 90th percentile measured, else assumed): one
            started later than this before the deadline ends late.
    """

    name: str
    kind: LaneKind = "requests"
    cost_per_item_usd: float | None = None
    queued: int = 0
    in_flight: int = 0
    done: int = 0
    throughput: float | None = None
    prior_throughput: float = 1.0
    window: int = 0
    busy_s: float = 0.0
    first_done_s: float | None = None
    mean_latency_s: float | None = None
    progress: float | None = None
    started_at: float | None = None
    prior_turnaround_s: float | None = None
    accepts: bool = True
    latency_s: float = 0.0

    @property
    def rate(self) -> float:
        """Items per second (requests lanes), from what the lane measured.

        In order: ``throughput`` when given; once ``window`` items (at least
        5) have finished, the items finished after the first over the busy
        seconds since it finished (the seconds before any item could finish
        are not counted against the pace); before that, the first items' own
        pace, ``window`` over their mean latency (Little's law), shrunk toward
        the prior: seconds per item averaged with the prior's, the prior
        counting as 5 items; with nothing finished, the prior.
        """
        if self.throughput is not None:
            return self.throughput
        if not self.done or self.window <= 0 or self.first_done_s is None:
            return self.prior_throughput
        since = self.busy_s - self.first_done_s
        if self.done >= max(5, self.window) and since > 0:
            return (self.done - 1) / since
        if not self.mean_latency_s or self.prior_throughput <= 0:
            return self.prior_throughput
        own_s = self.mean_latency_s / self.window  # seconds an item, by Little's law
        seconds = self.done * own_s + _PRIOR_WEIGHT / self.prior_throughput
        return (self.done + _PRIOR_WEIGHT) / seconds

    @property
    def load(self) -> int:
        """Items given to the lane and not finished."""
        return self.queued + self.in_flight

    @property
    def cost(self) -> float:
        """The cost per item, an unpriced lane last (infinite)."""
        return math.inf if self.cost_per_item_usd is None else self.cost_per_item_usd

    def batch_finish(self, now: float) -> float | None:
        """When the batch in progress is expected to end (planner clock), or None: unknown.

        Extrapolated from its measured progress; before any, ``prior_turnaround_s``
        after it started.
        """
        if self.started_at is None:
            return None
        elapsed = max(0.0, now - self.started_at)
        if self.progress is not None and self.progress >= 1.0:
            return now
        if self.progress:
            return self.started_at + elapsed / self.progress
        if self.prior_turnaround_s is not None:
            return self.started_at + self.prior_turnaround_s
        return None

    def batch_rate(self, now: float) -> float:
        """A batch lane's items done a second so far (0 before any progress)."""
        if self.started_at is None or not self.progress or now <= self.started_at:
            return 0.0
        return self.in_flight * self.progress / (now - self.started_at)
