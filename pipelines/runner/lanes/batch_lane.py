"""A lane through the provider's Batch API: :class:`BatchLane`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.lanes.lane import Lane, LaneEvent
from lc_async_pipelines.runner.lanes.state import LaneKind, LaneState
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record

__all__ = ["BatchControl", "BatchLane"]


class BatchControl(Protocol):
    """What a batch lane asks of its batch session.

    That is :class:`~lc_async_pipelines.runner.batch.BatchSession`'s
    ``progress`` and ``cancel``.
    """

    def progress(self) -> tuple[int, int]:
        """Lines ended and lines, over the batches in progress."""
        ...

    async def cancel(self) -> int:
        """Cancel the batches in progress; return how many were asked."""
        ...


class BatchLane(Lane):
    """Items whose model calls go through the Batch API: all started at once, batched by stage.

    Give it a chain on a :class:`~lc_async_pipelines.runner.batch.BatchSession`'s
    model with no retries (the session's ``progress`` and ``cancel`` as
    ``control``): an item whose line fails or is cancelled comes back (a
    :class:`LaneEvent` with ``back``) for the run to give to another lane,
    instead of waiting for another batch.

    Its pace is the provider's: the share of its batches' lines reported done
    (``request_counts``), since its first item was given. :meth:`cancel`
    cancels its batches (OpenAI cancels whole batches; their lines already
    done come back as results, at the batch price) and it takes no more items.

    Args:
        name: see :class:`Lane`.
        chain: see :class:`Lane`.
        options: see :class:`Lane`.
        emit: see :class:`Lane`.
        clock: see :class:`Lane`.
        control: the batch session.
        prior_turnaround_s: how long a batch is assumed to take before its
            progress is measured (None: assume it keeps the deadline).
        config: see :class:`Lane`.
    """

    kind: LaneKind = "batch"

    def __init__(
        self,
        name: str,
        chain: Runnable[Any, Any],
        options: RunOptions,
        emit: Callable[[LaneEvent], None],
        clock: Callable[[], float],
        *,
        control: BatchControl,
        prior_turnaround_s: float | None = None,
        config: RunnableConfig | None = None,
    ) -> None:
        """Set up the lane (see the class)."""
        super().__init__(name, chain, options, emit, clock, config)
        self.control = control
        self.prior_turnaround_s = prior_turnaround_s
        self.started_at: float | None = None
        self.cancelled = False
        self._cancelling: asyncio.Task[int] | None = None

    def state(self, now: float) -> LaneState:
        """See :meth:`Lane.state`."""
        ended, lines = self.control.progress()
        return LaneState(
            name=self.name,
            kind="batch",
            in_flight=len(self.tasks),
            done=self.done,
            progress=ended / lines if lines else None,
            started_at=self.started_at if self.tasks else None,
            prior_turnaround_s=self.prior_turnaround_s,
            accepts=not self.cancelled,
        )

    def submit(self, items: Sequence[Item]) -> None:
        """Start every item now: their calls wait in the session's next batch."""
        if items and not self.tasks:
            self.started_at = self.clock()
        for item in items:
            self.start(item)

    def withdraw(self, count: int) -> list[Item]:
        """Nothing waits unstarted here: items leave only through :meth:`cancel`."""
        return []

    async def cancel(self) -> None:
        """Cancel the lane's batches at the provider; take no more items.

        Items whose calls are in no batch the provider has yet (still
        collected into a stage) are taken back at once: nothing was paid for
        them. Should such a batch be created in the meantime, its results
        are dropped when they come (the items are done elsewhere).
        """
        self.cancelled = True
        if self._cancelling is None:
            self._cancelling = asyncio.create_task(self.control.cancel())
        asked = await self._cancelling
        if asked == 0:
            for task, item in list(self.tasks.items()):
                task.cancel()
                self.emit(
                    LaneEvent(self.name, item, Record(item.id, item.line, item.input), back=True)
                )

    def finished(self, item: Item, record: Record) -> None:
        """A result stays here; a failed or cancelled line goes back for another lane."""
        if record.ok:
            super().finished(item, record)
            return
        self.emit(LaneEvent(self.name, item, record, back=True))
