"""The command line's progress bar (rich): done, failed, tokens, items/s and an ETA."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from lc_async_pipelines.runner.core import Record


@contextlib.contextmanager
def progress_bar(total: int | None) -> Iterator[Callable[[Record], None]]:
    """Yield a per-record callback drawing a progress bar on stderr, or a no-op off a terminal.

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

    counts = {"done": 0, "failed": 0, "tokens": 0}
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
            elapsed = progress.tasks[0].elapsed or 0.0
            finished = counts["done"] + counts["failed"]
            if total is not None and finished > total:  # the count was an estimate
                progress.update(task, total=finished)
            progress.update(
                task,
                advance=1,
                rate=finished / elapsed if elapsed else 0.0,
                description=f"done {counts['done']} failed {counts['failed']} "
                f"tokens {counts['tokens']}",
            )

        yield tick
