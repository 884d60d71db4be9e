"""The command line's progress bar (rich): done, failed, tokens, cost so far, items/s and an ETA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import ProgressColumn

    from lc_async_pipelines.runner.record import Record


def bar_columns() -> tuple[ProgressColumn, ...]:
    """The bar's columns: the counts, the bar, done of total, items/s and the ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} items/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


@dataclass
class BarCounts:
    """What the bar's description counts over this session's records.

    The cost is the sum of the records' ``cost_usd`` (USD; shown once a record
    carries one), marked ``+`` when some records have no price; with no price
    at all it reads ``unpriced``, never ``$0``.
    """

    done: int = 0
    failed: int = 0
    tokens: int = 0
    unpriced: int = 0
    cost: list[float] = field(default_factory=list)  # empty until a record carries a cost

    @property
    def finished(self) -> int:
        """Records counted, done or failed."""
        return self.done + self.failed

    def add(self, record: Record) -> None:
        """Count ``record``."""
        if record.ok:
            self.done += 1
        else:
            self.failed += 1
        self.tokens += record.usage.get("total_tokens", 0)
        if record.cost_usd is not None:
            self.cost[:] = [(self.cost[0] if self.cost else 0.0) + record.cost_usd]
        elif record.calls:
            self.unpriced += 1

    def description(self) -> str:
        """``done 3 failed 0 tokens 1234 $0.0012`` (or ``unpriced``)."""
        return f"done {self.done} failed {self.failed} tokens {self.tokens}" + self._cost_text()

    def _cost_text(self) -> str:
        if not self.cost:
            return " unpriced" if self.unpriced else ""
        return f" ${self.cost[0]:.4f}" + ("+" if self.unpriced else "")
