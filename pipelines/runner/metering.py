"""The runner's hook for pricing a run: what it asks of a cost meter, without importing one.

:func:`~lc_async_pipelines.runner.run_items` prices each item's calls and
holds a run's cost cap through :attr:`RunOptions.costs
<lc_async_pipelines.runner.RunOptions>`, anything that does what
:class:`RunCosts` says. The meter of this package is
:class:`lc_async_pipelines.runner.costs.CostMeter`; the runner knows only
this interface, so the costs package sits above the runner and not beside it.
"""

from __future__ import annotations

from typing import Protocol

from langchain_core.callbacks import BaseCallbackHandler

from lc_async_pipelines.runner.inputs import Item

__all__ = ["ItemCostCounter", "RunCosts"]


class ItemCostCounter(BaseCallbackHandler):
    """A callback handler that prices the model calls of one item, as they end.

    The runner adds it to the item's callbacks and copies its totals into the
    item's record.

    Attributes:
        cost_usd: the item's cost so far, USD; None once a call's model has no price.
        cache_saved_usd: what its LLM cache hits would have cost, USD.
        batch_saved_usd: standard price minus batch price of its batch calls, USD.
        calls: calls priced (or found unpriced).
    """

    cost_usd: float | None
    cache_saved_usd: float
    batch_saved_usd: float
    calls: int


class RunCosts(Protocol):
    """What the runner asks of a run's cost meter: a counter per item, and the cap."""

    @property
    def capped(self) -> bool:
        """True once the cap is reached for good: no item starts any more."""
        ...

    def admit(self, item: Item) -> bool:
        """Reserve ``item``'s estimated cost and return True, or return False.

        False with items still in flight means "not now": the runner holds
        ``item`` and asks again as each of them finishes (its reservation
        freed, its measured cost known). False with none in flight sets
        :attr:`capped`.
        """
        ...

    def item(self, item_id: str) -> ItemCostCounter:
        """Return the handler that prices the calls of item ``item_id``."""
        ...

    def finish(self, item: Item, costs: ItemCostCounter) -> None:
        """Release ``item``'s reservation once its record is complete."""
        ...
