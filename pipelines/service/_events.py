"""Running a chain for a request: one input (invoke), its tokens as server-sent events, a batch.

Every run counts its inputs in the state's ``in_flight`` while they run, and
fills the request's log ``entry``, which is logged after the response by
:func:`log_request` (never headers, so never the bearer token or API key).

A failure reaches the client as its error class and the request id
(:func:`client_error`); the exception's text, which may echo a provider's
reply or a proxy's copy of the request headers, goes only to this service's
log, scrubbed (:func:`log_failure`). Our own errors (:class:`PipelinesError`:
a deadline, an input the chain refused) keep their scrubbed message.

On shutdown (:attr:`ServiceState.shutting_down`, or sse-starlette's own
shutdown notice) a stream or batch gets the grace period to finish, then an
``error`` event ``ServerShuttingDown`` (:func:`until_shutdown`).
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

import anyio
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableConfig
from sse_starlette import ServerSentEvent

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.callbacks.metrics import MetricsCallbackHandler
from lc_async_pipelines.callbacks.queue import QueueCallbackHandler, StreamEvent
from lc_async_pipelines.errors import PipelinesError
from lc_async_pipelines.runner import Item, Record, RunOptions, is_transient, run_items
from lc_async_pipelines.runner.notes import ItemNotes
from lc_async_pipelines.service._settings import ServiceSettings
from lc_async_pipelines.service._state import ServiceState

__all__ = [
    "SHUTTING_DOWN",
    "batch_events",
    "client_error",
    "grace_over",
    "invoke_one",
    "jsonable",
    "log_failure",
    "log_request",
    "record_figures",
    "shutting_down_error",
    "stream_events",
    "until_shutdown",
]

SHUTTING_DOWN = "ServerShuttingDown"
"""The error type a client gets for work cut short by the server's shutdown."""

_CLEANUP_S = 5.0  # bound on waiting for a cancelled run's own cleanup

log = logging.getLogger("lc_async_pipelines.service")


def log_request(entry: dict[str, Any]) -> None:
    """Log one request's entry: id, pipeline, endpoint, outcome, usage, timings."""
    log.info("request %s", json.dumps(entry, sort_keys=True, default=str))


def client_error(
    exc: BaseException | None, request_id: str, kind: str | None = None
) -> dict[str, Any]:
    """Return what a client may see of a failure: its class, a message, the request id.

    A model's or endpoint's exception text is never included: it can hold
    what the provider echoed back (a key, a header). The message of one of
    our own errors (:class:`~lc_async_pipelines.errors.PipelinesError`: a
    deadline, an input the chain refused) is kept, scrubbed.

    Args:
        exc: the exception (None: only ``kind`` is known).
        request_id: the id under which :func:`log_failure` logged the details.
        kind: the error class name when ``exc`` is None.
    """
    name = type(exc).__name__ if exc is not None else (kind or "Error")
    if isinstance(exc, PipelinesError):
        message = error_text(exc, 500)
    else:
        message = f"the details are in the service log under request {request_id}"
    return {"type": name, "message": message, "request_id": request_id}


def shutting_down_error(request_id: str) -> dict[str, Any]:
    """Return the error a client gets for work cut short by the server's shutdown."""
    return {
        "type": SHUTTING_DOWN,
        "message": "the server is shutting down; send the request again",
        "request_id": request_id,
    }


def log_failure(request_id: str, where: str, exc: BaseException | None) -> None:
    """Log a failure's class and scrubbed message under the request id (no traceback).

    A traceback would repeat the message unscrubbed, so none is logged.
    """
    if exc is None:
        return
    log.warning(
        "request %s %s failed: %s: %s", request_id, where, type(exc).__name__, error_text(exc)
    )


def jsonable(value: Any) -> Any:
    """Return a chain's output as JSON can hold it, UTF-8 safe.

    A Pydantic model becomes its object; a lone surrogate in any string (a
    model's reply cut inside a character) becomes U+FFFD, so no reply fails
    to encode.
    """
    dump = getattr(value, "model_dump", None)
    return _utf8_safe(dump(mode="json") if callable(dump) else value)


def _utf8_safe(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8_safe(v) for v in value]
    return value


def record_figures(record: Record) -> dict[str, Any]:
    """Return a record's usage, latency, TTFT, calls, attempts and notes."""
    return {
        "usage": record.usage,
        "latency_s": record.latency_s,
        "ttft_s": record.ttft_s,
        "calls": record.calls,
        "attempts": record.attempts,
        "notes": record.notes,
    }


def _sse(event: str, data: Mapping[str, Any]) -> ServerSentEvent:
    text = json.dumps(data, ensure_ascii=False, default=str)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in a model's text: send it escaped
            text = json.dumps(data, default=str)
    return ServerSentEvent(data=text, event=event)


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
    metrics, notes = MetricsCallbackHandler(), ItemNotes()
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
                callbacks: list[BaseCallbackHandler] = [QueueCallbackHandler(queue), metrics, notes]
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
        yield _sse("end", {"output": jsonable(output), **figures, "notes": notes.notes})
    except Exception as exc:
        entry.update(_stream_figures(metrics, start), error=type(exc).__name__)
        log_failure(entry["id"], f"{entry.get('pipeline')}/stream", exc)
        yield _sse("error", client_error(exc, entry["id"]))
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
                error = None
                if record.error is not None:
                    where = f"{entry.get('pipeline')}/batch[{record.id}]"
                    log_failure(entry["id"], where, record.exception)
                    error = client_error(record.exception, entry["id"], record.error.get("type"))
                yield _sse(
                    "result",
                    {
                        "index": int(record.id),
                        "output": jsonable(record.output),
                        "error": error,
                        **record_figures(record),
                    },
                )
        yield _sse("end", {"done": done, "failed": failed})
    finally:
        state.in_flight -= len(items)
        entry.update({"items": len(items), "done": done, "failed": failed})


async def grace_over(state: ServiceState, notice: anyio.Event | None = None) -> None:
    """Return once the service is shutting down and its grace period has passed.

    Args:
        state: the service's state; its ``shutting_down`` event starts the grace.
        notice: another shutdown signal (sse-starlette's, set on SIGTERM under
            any uvicorn), which starts it too.
    """
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(state.shutting_down.wait())}
    if notice is not None:
        waits.add(asyncio.ensure_future(notice.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    await asyncio.sleep(state.settings.shutdown_grace_s)


_END = object()


async def until_shutdown(
    state: ServiceState,
    events: AsyncIterator[ServerSentEvent],
    entry: dict[str, Any],
    notice: anyio.Event | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """Pass ``events`` on until they end, or until the shutdown's grace period is over.

    ``events`` run in a task of their own, so they can be cut at any point:
    when the grace is over they are cancelled (their model calls with them)
    and one ``error`` event ``ServerShuttingDown`` ends the stream. A client
    that disconnects cancels them too.

    Yields:
        The events, then possibly that ``error`` event.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=32)
    failure: list[Exception] = []

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as exc:  # raised to the consumer below
            failure.append(exc)
        await queue.put(_END)

    pumping = asyncio.create_task(pump())
    grace = asyncio.create_task(grace_over(state, notice))
    getter: asyncio.Task[Any] | None = None
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            await asyncio.wait({getter, grace}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                break
            item = getter.result()
            if item is _END:
                if failure:
                    raise failure[0]
                return
            yield item
        getter.cancel()
        pumping.cancel()
        await asyncio.wait({pumping}, timeout=_CLEANUP_S)
        entry["error"] = SHUTTING_DOWN
        yield _sse("error", shutting_down_error(entry["id"]))
    finally:
        for task in (getter, grace, pumping):
            if task is not None and not task.done():
                task.cancel()
        # The client may be gone and this task cancelled: shield the wait for the cleanup.
        with anyio.move_on_after(_CLEANUP_S, shield=True):
            await asyncio.gather(pumping, return_exceptions=True)
