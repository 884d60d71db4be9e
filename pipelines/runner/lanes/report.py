"""What a lanes run did: :class:`LaneReport`, for the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines.runner.record import Record

__all__ = ["LaneReport"]


@dataclass
class LaneReport:
    """Items, cost and savings per lane; the deadline and whether it was met.

    Attributes:
        deadline_s: seconds from the start the run was given.
        items: lane name -> records written from it.
        cost_usd: lane name -> their cost, USD.
        saved_usd: what the lanes saved against every item at the standard
            price (records' ``lane_saved_usd``), USD.
        moved: items a lane gave back or moved to another.
        cancelled: batch lanes cancelled to keep the deadline.
        elapsed_s: seconds from the start to the last record.
        held: items never given to a lane (the cap).
        left: items without a record when the run ended (stopped, or the cap).
    """

    deadline_s: float
    items: dict[str, int] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)
    saved_usd: float = 0.0
    moved: int = 0
    cancelled: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    held: int = 0
    left: int = 0

    @property
    def met(self) -> bool:
        """True when every item has its record and the last came by the deadline."""
        return self.left == 0 and self.elapsed_s <= self.deadline_s

    def add(self, record: Record, elapsed_s: float) -> None:
        """Count ``record``, written ``elapsed_s`` after the start."""
        lane = record.lane or "none"
        self.items[lane] = self.items.get(lane, 0) + 1
        self.cost_usd[lane] = self.cost_usd.get(lane, 0.0) + (record.cost_usd or 0.0)
        self.saved_usd += record.lane_saved_usd
        self.elapsed_s = max(self.elapsed_s, elapsed_s)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (USD rounded to 1e-6, seconds to 0.1)."""
        return {
            "deadline_s": round(self.deadline_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "deadline_met": self.met,
            "items": dict(self.items),
            "cost_usd": {k: round(v, 6) for k, v in self.cost_usd.items()},
            "saved_usd": round(self.saved_usd, 6),
            "moved": self.moved,
            "cancelled": list(self.cancelled),
            "held": self.held,
            "left": self.left,
        }

    def describe(self) -> str:
        """One line for people."""
        parts = [
            f"{name} {count:,} (${self.cost_usd.get(name, 0.0):.4f})"
            for name, count in self.items.items()
        ]
        verdict = "met" if self.met else "missed"
        if self.left:
            verdict = f"not reached ({self.left:,} items left)"
        return (
            f"lanes: {', '.join(parts) or 'no items'}; saved ${self.saved_usd:.4f} against "
            f"all standard; deadline {verdict} "
            f"({self.elapsed_s:,.0f} s of {self.deadline_s:,.0f} s)"
        )
