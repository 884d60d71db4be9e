"""The ``--max-cost`` cap held across lanes: :class:`SharedCap`."""

from __future__ import annotations

from collections.abc import Callable

from lc_async_pipelines.errors import ConfigurationError

__all__ = ["SharedCap"]


class SharedCap:
    """One cap over every lane: spent, plus the estimates of items given and not done.

    An item is given to a lane only when :meth:`admit` says so: what the
    lanes' meters have spent (``spent``), plus the estimates of the items
    given and not yet done, plus its own estimate in that lane, stays within
    ``max_cost_usd``. Its reservation is freed when its record is written or
    it moves (and it is admitted again, at the new lane's estimate). Refused
    while nothing is reserved, the cap is reached for good (:attr:`capped`).
    A lane's in-flight spending counts twice (spent and reserved) until the
    item ends: the cap errs on the safe side.

    Args:
        max_cost_usd: the cap, USD (None: no cap; everything is admitted).
        spent: what the lanes spent in this session, USD, when asked.
        prior_usd: what earlier sessions of the run spent, USD.

    Raises:
        ConfigurationError: ``max_cost_usd`` is negative.
    """

    def __init__(
        self, max_cost_usd: float | None, spent: Callable[[], float], prior_usd: float = 0.0
    ) -> None:
        """Hold ``max_cost_usd`` over ``spent`` (see the class)."""
        if max_cost_usd is not None and not max_cost_usd >= 0:
            msg = f"max_cost_usd must be >= 0, got {max_cost_usd!r}"
            raise ConfigurationError(msg)
        self.max_cost_usd = max_cost_usd
        self._spent = spent
        self.prior_usd = prior_usd
        self.reserved: dict[str, float] = {}
        self.capped = False

    @property
    def spent_usd(self) -> float:
        """Spent over the run so far, USD (earlier sessions included)."""
        return self.prior_usd + self._spent()

    @property
    def committed_usd(self) -> float:
        """Spent, plus the estimates of the items given and not done, USD."""
        return self.spent_usd + sum(self.reserved.values())

    def admit(self, item_id: str, estimate: float | None) -> bool:
        """Reserve ``estimate`` (USD; None: 0) for ``item_id`` and return True, or return False."""
        cost = estimate or 0.0
        if self.max_cost_usd is not None and self.committed_usd + cost > self.max_cost_usd:
            self.capped = self.capped or not self.reserved
            return False
        self.reserved[item_id] = cost
        return True

    def release(self, item_id: str) -> None:
        """Free ``item_id``'s reservation (its record written, or it moves)."""
        self.reserved.pop(item_id, None)
