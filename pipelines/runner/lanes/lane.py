"""A lane's public interface, :class:`Lane`, and what lanes tell the run: :class:`LaneEvent`."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.runner.costs import CostMeter, usage_cost
from lc_async_pipelines.runner.costs.meter import item_text
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.lanes.state import LaneKind, LaneState
from lc_async_pipelines.runner.loop import run_item
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record

__all__ = ["Lane", "LaneEvent"]


@dataclass(frozen=True)
class LaneEvent:
    """An item's end in a lane.

    Attributes:
        lane: the lane's name.
        item: the item.
        record: its record (``record.lane`` set).
        back: the lane gives the item back for another lane (a batch line
            cancelled or failed); ``record`` is then the error it ended with.
    """

    lane: str
    item: Item
    record: Record
    back: bool = False


class Lane(abc.ABC):
    """A way to run items: a price per item, a measured pace, submit, and take back.

    A lane runs the run's chain built on its own model (the standard tier,
    the flex tier, the Batch API) with ``options`` (its retries and its
    :class:`~lc_async_pipelines.runner.costs.CostMeter`, which prices each
    record; the run's cap is held by the caller across lanes). Each item's
    end is handed to ``emit`` as a :class:`LaneEvent`.

    Args:
        name: the lane's name, written to each record's ``lane``.
        chain: the chain on this lane's model.
        options: run options for each item (``costs`` a ``CostMeter``).
        emit: called with each item's end.
        clock: the run's clock (seconds; ``time.monotonic`` in a real run).
        config: the ``RunnableConfig`` of every item.
    """

    kind: LaneKind = "requests"

    def __init__(
        self,
        name: str,
        chain: Runnable[Any, Any],
        options: RunOptions,
        emit: Callable[[LaneEvent], None],
        clock: Callable[[], float],
        config: RunnableConfig | None = None,
    ) -> None:
        """Set up the lane; nothing runs until :meth:`submit`."""
        self.name = name
        self.chain = chain
        self.options = options
        self.emit = emit
        self.clock = clock
        self.config = config or RunnableConfig()
        self.tasks: dict[asyncio.Task[Record], Item] = {}
        self.done = 0

    @property
    def meter(self) -> CostMeter | None:
        """The lane's cost meter (None: costs not counted)."""
        costs = self.options.costs
        return costs if isinstance(costs, CostMeter) else None

    def standard_estimate(self, item: Item) -> float | None:
        """``item`` at the standard price before anything is measured, USD (None: unpriced).

        Its input's estimated tokens, and a whole reply of the meter's
        ``output_tokens`` (the chain's ``max_tokens``): an upper bound.
        """
        meter = self.meter
        price = None if meter is None else meter.prices.price_of(meter.model)
        if meter is None or price is None:
            return None
        tokens = estimate_tokens(item_text(item.input))
        return usage_cost(price, {"input_tokens": tokens, "output_tokens": meter.output_tokens})

    def price_factor(self) -> float | None:
        """This lane's price over the standard price (batch and flex: about 0.5; None: unpriced).

        Read from the meter's prices at its tier for a call of 1,000 tokens in
        and 500 out, so every lane's estimate rests on one measured base (see
        :class:`~lc_async_pipelines.runner.lanes.run.LaneRun`), not on each
        lane's own guesses.
        """
        meter = self.meter
        price = None if meter is None else meter.prices.price_of(meter.model)
        if meter is None or price is None:
            return None
        usage = {"input_tokens": 1000, "output_tokens": 500}
        standard = usage_cost(price, usage)
        return usage_cost(price, usage, tier=meter.tier) / standard if standard else 1.0

    def saved(self, record: Record) -> float:
        """What ``record``'s calls would have cost at the standard price, less their cost, USD."""
        meter = self.meter
        price = None if meter is None else meter.prices.price_of(meter.model)
        if price is None or record.cost_usd is None:
            return 0.0
        return max(0.0, usage_cost(price, record.usage) - record.cost_usd)

    @abc.abstractmethod
    def state(self, now: float) -> LaneState:
        """The lane's :class:`LaneState` at ``now`` (its cost per item is the run's to set)."""

    @abc.abstractmethod
    def submit(self, items: Sequence[Item]) -> None:
        """Give ``items`` to the lane (admitted under the cap by the caller)."""

    @abc.abstractmethod
    def withdraw(self, count: int) -> list[Item]:
        """Take back up to ``count`` items not started; return them."""

    async def cancel(self) -> None:  # noqa: B027  (a lane without batches has nothing to cancel)
        """Stop the lane's work at the provider for the items it holds (batch lanes)."""

    def start(self, item: Item) -> None:
        """Run ``item`` now, as a task of this lane."""
        task = asyncio.create_task(run_item(self.chain, item, self.options, config=self.config))
        self.tasks[task] = item
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Record]) -> None:
        item = self.tasks.pop(task)
        if task.cancelled():
            return
        record = task.result()
        record.lane = self.name
        record.lane_saved_usd = self.saved(record)
        self.finished(item, record)

    def finished(self, item: Item, record: Record) -> None:
        """Hand the item's end on (a batch lane gives failed lines back)."""
        self.done += 1
        self.emit(LaneEvent(self.name, item, record))

    async def aclose(self) -> None:
        """Cancel the items still running here (they leave no record) and wait for them."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
