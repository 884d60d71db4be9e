"""Running a chain for a request: one input (invoke), its tokens as server-sent events, a batch.

Every run counts its inputs in the state's ``in_flight`` while they run, and
fills the request's log ``entry``, which is logged after the response by
:func:`log_request` (never headers, so never the bearer token or API key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableConfig
from sse_starlette import ServerSentEvent

from lc_async_pipelines.callbacks.metrics import MetricsCallbackHandler
from lc_async_pipelines.callbacks.queue import QueueCallbackHandler, StreamEvent
from lc_async_pipelines.runner import Item, Record, RunOptions, is_transient, run_items
from lc_async_pipelines.service._settings import ServiceSettings
from lc_async_pipelines.service._state import ServiceState

__all__ = [
    "batch_events",
    "invoke_one",
    "jsonable",
    "log_request",
    "record_figures",
    "stream_events",
]

log = logging.getLogger("lc_async_pipelines.service")


def log_request(entry: dict[str, Any]) -> None:
    """Log one request's entry: id, pipeline, endpoint, outcome, usage, timings."""
    log.info("request %s", json.dumps(entry, sort_keys=True, default=str))


def jsonable(value: Any) -> Any:
    """Return a chain's output as JSON can hold it (a Pydantic model as its object)."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def record_figures(record: Record) -> dict[str, Any]:
    """Return a record's usage, latency, TTFT, calls and attempts."""
    return {
        "usage": record.usage,
        "latency_s": record.latency_s,
        "ttft_s": record.ttft_s,
        "calls": record.calls,
        "attempts": record.attempts,
    }


def _sse(event: str, data: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False, default=str), event=event)


async def invoke_one(chain: Runnable[Any, Any], item: Item, settings: ServiceSettings) -> Record:
    """Run one item with the runner's retries, deadline, timings and usage.

    Returns:
        Its record; a failure is a record with ``error`` and ``exception`` set.
    """
    options = RunOptions(retry=settings.retry, item_timeout_s=settings.request_timeout_s)
    records = run_items(chain, [item], options)
    async with aclosing(records):
        async for record in records:
            return record
    raise RuntimeError("the runner yielded no record")  # unreachable: one item, one record


async def stream_events(
    state: ServiceState,
    chain: Runnable[Any, Any],
    value: str | dict[str, Any],
    entry: dict[str, Any],
) -> AsyncIterator[ServerSentEvent]:
    """Run ``chain`` on ``value``, yielding its tokens, then ``end`` or ``error``.

    A transient failure (429, 5xx, connection) before the first token is retried
    with the service's :class:`~lc_async_pipelines.runner.RetryPolicy`; after a
    token has been sent the client has seen part of an answer, so the error is
    sent instead. sse-starlette cancels this generator when the client
    disconnects; the ``finally`` then cancels the model call.

    Yields:
        ``token`` events (``{"text", "call"}``), then one ``end`` (output,
        usage, latency, TTFT, calls) or one ``error`` (``{"type", "message"}``).
    """
    metrics = MetricsCallbackHandler()
    calls: dict[uuid.UUID, int] = {}
    sent = 0
    start = time.perf_counter()
    state.in_flight += 1
    entry["ok"] = False
    task: asyncio.Task[Any] | None = None

    def retryable(exc: BaseException) -> bool:
        return sent == 0 and is_transient(exc)

    try:
        async for attempt in state.settings.retry.retrying(retryable):
            with attempt:
                queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
                callbacks: list[BaseCallbackHandler] = [QueueCallbackHandler(queue), metrics]
                task = asyncio.create_task(chain.ainvoke(value, {"callbacks": callbacks}))
                task.add_done_callback(lambda _, q=queue: q.put_nowait(None))  # type: ignore[misc]
                while (event := await queue.get()) is not None:
                    if event.kind == "token" and event.text:
                        sent += 1
                        call = calls.setdefault(event.run_id, len(calls))
                        yield _sse("token", {"text": event.text, "call": call})
                output = task.result()
        figures = _stream_figures(metrics, start)
        entry.update(figures, ok=True)
        yield _sse("end", {"output": jsonable(output), **figures})
    except Exception as exc:
        entry.update(_stream_figures(metrics, start), error=type(exc).__name__)
        yield _sse("error", {"type": type(exc).__name__, "message": str(exc)[:2000]})
    finally:
        state.in_flight -= 1
        if task is not None and not task.done():
            entry["error"] = "ClientDisconnected"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _stream_figures(metrics: MetricsCallbackHandler, start: float) -> dict[str, Any]:
    return {
        "usage": metrics.usage(),
        "latency_s": round(time.perf_counter() - start, 4),
        "ttft_s": metrics.first_ttft(),
        "calls": len(metrics.calls),
    }


async def batch_events(
    state: ServiceState,
    chain: Runnable[Any, Any],
    values: Sequence[str | dict[str, Any]],
    entry: dict[str, Any],
) -> AsyncIterator[ServerSentEvent]:
    """Run ``values`` through ``chain`` with the runner, yielding each record as it completes.

    A client gone mid-batch closes the runner, which cancels its items.

    Yields:
        One ``result`` event per input (``index``, ``output``, ``error``,
        figures), in completion order, then ``end`` (``{"done", "failed"}``).
    """
    items = [Item(str(i), i, v) for i, v in enumerate(values)]
    options = RunOptions(
        concurrency=len(items),
        retry=state.settings.retry,
        item_timeout_s=state.settings.request_timeout_s,
    )
    config = RunnableConfig(max_concurrency=len(items))  # reaches nested abatch (map-reduce)
    done = failed = 0
    state.in_flight += len(items)
    try:
        records = run_items(chain, items, options, config=config)
        async with aclosing(records):
            async for record in records:
                done, failed = done + record.ok, failed + (not record.ok)
                yield _sse(
                    "result",
                    {
                        "index": int(record.id),
                        "output": jsonable(record.output),
                        "error": record.error,
                        **record_figures(record),
                    },
                )
        yield _sse("end", {"done": done, "failed": failed})
    finally:
        state.in_flight -= len(items)
        entry.update({"items": len(items), "done": done, "failed": failed})
