"""The command line's progress bar (rich): done, failed, tokens, cost so far, items/s and an ETA."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from lc_async_pipelines.runner.record import Record


@contextlib.contextmanager
def progress_bar(total: int | None) -> Iterator[Callable[[Record], None]]:
    """Yield a per-record callback drawing a progress bar on stderr, or a no-op off a terminal.

    The cost shown is the sum of the records' ``cost_usd`` in this session
    (USD; shown once a record carries one), marked ``+`` when some records
    have no price.

    Args:
        total: items expected in this session (None: unknown, no ETA is shown).
    """
    if not sys.stderr.isatty():
        yield lambda record: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    counts = {"done": 0, "failed": 0, "tokens": 0, "unpriced": 0}
    cost: list[float] = []  # empty until a record carries a cost
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} items/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("", total=total, rate=0.0)

        def tick(record: Record) -> None:
            counts["done" if record.ok else "failed"] += 1
            counts["tokens"] += record.usage.get("total_tokens", 0)
            if record.cost_usd is not None:
                cost[:] = [(cost[0] if cost else 0.0) + record.cost_usd]
            elif record.calls:
                counts["unpriced"] += 1
            elapsed = progress.tasks[0].elapsed or 0.0
            finished = counts["done"] + counts["failed"]
            if total is not None and finished > total:  # the count was an estimate
                progress.update(task, total=finished)
            progress.update(
                task,
                advance=1,
                rate=finished / elapsed if elapsed else 0.0,
                description=f"done {counts['done']} failed {counts['failed']} "
                f"tokens {counts['tokens']}" + _cost_text(cost, counts["unpriced"]),
            )

        yield tick


def _cost_text(cost: list[float], unpriced: int) -> str:
    """`` $0.0123`` (``+`` when some records have no price), or nothing before any cost."""
    if not cost:
        return ""
    return f" ${cost[0]:.4f}" + ("+" if unpriced else "")
