"""Run a chain over many items concurrently, one record per item, nothing lost.

Each item runs through the whole chain on its own (``chain.ainvoke``), inside a
window of ``max_concurrency`` items in flight, with its own attempt count and
backoff. We do not use ``chain.with_retry().abatch``: ``RunnableRetry.abatch``
can hand outputs to the wrong items (langchain issue #35475), one non-retryable
error can come back for every item of the batch, and ``RunnableSequence.abatch``
waits for every item at each step.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines import telemetry
from lc_async_pipelines._scrub import error_text
from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import DeadlineExceeded, RowError
from lc_async_pipelines.runner._calls import ItemCalls
from lc_async_pipelines.runner._history import AttemptLog, logging_into
from lc_async_pipelines.runner.fresh import fresh_items
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.metering import ItemCostCounter
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record
from lc_async_pipelines.runner.retry import RetryPolicy, is_transient

if TYPE_CHECKING:
    from lc_async_pipelines.telemetry.instruments import Telemetry

__all__ = ["run_item", "run_items"]


def _fail(record: Record, exc: BaseException) -> None:
    record.output = None
    record.exception = exc
    # Error text from an endpoint may echo the request's headers: scrubbed before it is kept.
    record.error = {"type": type(exc).__name__, "message": error_text(exc)}


def _size(value: str | dict[str, Any]) -> int:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return estimate_tokens(text)


def _refusal(item: Item, options: RunOptions) -> RowError | None:
    """Why ``item`` is not sent at all (a bad row, an input over the limit), or None."""
    if item.error is not None:
        return RowError(item.error)
    size = _size(item.input)
    limit = options.max_input_tokens
    if limit is not None and size + options.prompt_tokens > limit:
        # the template is sent with every row: a 50 MB prompt file is 50 MB a call
        prompt = f" with the prompt's {options.prompt_tokens}" if options.prompt_tokens else ""
        message = (
            f"line {item.line}: input of about {size} tokens{prompt} exceeds the limit of {limit}"
        )
        return RowError(message)
    return None


def _item_config(
    config: RunnableConfig, item: Item, own: list[BaseCallbackHandler]
) -> RunnableConfig:
    """The config of one item's calls: ``own`` handlers, then the run's; ``item_id`` metadata."""
    return {
        **config,
        "callbacks": [*own, *_handlers(config)],
        "metadata": {**config.get("metadata", {}), "item_id": item.id},
    }


async def _attempts_within_deadline(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    options: RunOptions,
    record: Record,
    log: AttemptLog,
    tel: Telemetry | None = None,
) -> None:
    """Run the item's attempts within its deadline; any failure becomes the record's error."""
    deadline = asyncio.timeout(options.item_timeout_s)
    try:
        async with deadline:
            with logging_into(log):
                await _attempts(chain, item, config, options.retry, record, log, tel)
    except asyncio.CancelledError:
        raise
    except TimeoutError as exc:
        if deadline.expired():
            message = (
                f"item not done within {options.item_timeout_s} s ({record.attempts} attempts)"
            )
            _fail(record, DeadlineExceeded(message))
        else:  # a timeout inside the chain, retries spent
            _fail(record, exc)
    except Exception as exc:  # every failure becomes this item's error record
        _fail(record, exc)


def _note_calls(record: Record, metrics: ItemCalls, log: AttemptLog) -> None:
    """Copy the item's call metrics and attempt history into its record."""
    ttft = metrics.ttft_s()
    if ttft is not None and log.first_queued_s is not None:
        ttft = max(0.0, ttft - log.first_queued_s)  # from the request's send, not the call's start
    # no later than the item's end: the two clocks start a few steps apart
    record.ttft_s = None if ttft is None else min(round(ttft, 4), record.latency_s)
    record.queued_s = log.queued_s
    record.usage = metrics.usage()
    record.calls = metrics.count()
    record.service_tier = metrics.service_tier()
    record.history = log.entries
    record.history_dropped = log.dropped
    record.throttled = log.throttled


def _note_costs(record: Record, costs: ItemCostCounter) -> None:
    """Copy what the item's calls cost, and saved, into its record."""
    record.cost_usd = costs.cost_usd
    record.cache_saved_usd = costs.cache_saved_usd
    record.batch_saved_usd = costs.batch_saved_usd


async def _run_one(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    options: RunOptions,
    traced: tuple[Telemetry, Any, float] | None = None,
) -> Record:
    """Run one item through ``chain``; with ``traced`` (telemetry, run span, held since), traced."""
    if traced is None:
        return await _run_item(chain, item, config, options)
    tel, run, held_since = traced
    with tel.item(run, item.id, item.line) as span:
        if held_since:  # the cost cap held it back while other items ran
            tel.record_wait(time.perf_counter() - held_since, limit="cost", queue_depth=0)
        record = await _run_item(chain, item, config, options, tel)
        tel.end_item(
            span, attempts=record.attempts, cost_usd=record.cost_usd, error=record.exception
        )
    return record


async def _run_item(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    options: RunOptions,
    tel: Telemetry | None = None,
) -> Record:
    """Run one item through ``chain``: its record, an error record for any failure."""
    record = Record(id=item.id, line=item.line, input=item.input)
    refusal = _refusal(item, options)
    if refusal is not None:
        _fail(record, refusal)
        return record
    metrics = ItemCalls()
    costs = options.costs.item(item.id) if options.costs is not None else None
    own = [metrics, *([costs] if costs is not None else [])]
    item_config = _item_config(config, item, own)
    start = time.perf_counter()
    log = AttemptLog()
    await _attempts_within_deadline(chain, item, item_config, options, record, log, tel)
    end = time.perf_counter()
    # the wait for the budget before the first request is queued_s's, not latency's
    record.latency_s = round(end - max(start, log.first_sent_at or start), 4)
    _note_calls(record, metrics, log)
    record.notes = metrics.notes
    if costs is not None and options.costs is not None:
        _note_costs(record, costs)
        options.costs.finish(item, costs)
    return record


async def run_item(
    chain: Runnable[Any, Any],
    item: Item,
    options: RunOptions | None = None,
    *,
    config: RunnableConfig | None = None,
) -> Record:
    """Run one item as :func:`run_items` runs each, outside its window: its record.

    For a caller with its own scheduling (the lanes of
    :mod:`lc_async_pipelines.runner.lanes`): the same refusals, retries,
    ``item_timeout_s``, metrics and pricing (``options.costs``: its
    ``admit`` is not asked, the caller holds the cap). Every failure is an
    error record; only cancellation is raised.
    """
    return await _run_item(chain, item, config or RunnableConfig(), options or RunOptions())


async def _attempts(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    policy: RetryPolicy,
    record: Record,
    log: AttemptLog,
    tel: Telemetry | None = None,
) -> None:
    """Run the item, retrying it whole only for failures that no model call retried."""
    last: list[dict[str, Any]] = []  # the item-level entries, for their backoff

    async def attempt() -> Any:
        began = time.perf_counter()
        try:
            return await chain.ainvoke(item.input, config)
        except Exception as exc:
            if not log.logged(exc):  # not a model call's error: log it at item level
                last.append(log.add(exc, stage="item", seconds=time.perf_counter() - began))
            raise

    def retry_item(exc: BaseException) -> bool:
        return is_transient(exc) and not log.exhausted

    def on_retry(exc: BaseException, wait: float) -> None:
        if last:
            last[-1]["wait_s"] = round(wait, 3)
        if tel is not None:
            tel.retried(exc, wait, stage="item", attempt=record.attempts)

    def on_attempt(number: int) -> None:
        record.attempts = number

    record.output = await policy.call(attempt, retry_item, on_retry=on_retry, on_attempt=on_attempt)


def _handlers(config: RunnableConfig) -> list[BaseCallbackHandler]:
    callbacks = config.get("callbacks")
    if callbacks is None:
        return []
    if isinstance(callbacks, list):
        return list(callbacks)
    return list(callbacks.handlers)


class _Running:
    """The items in flight, and the source they are started from."""

    def __init__(
        self,
        chain: Runnable[Any, Any],
        source: Iterator[Item],
        options: RunOptions,
        config: RunnableConfig,
    ) -> None:
        self.chain = chain
        self.source = source
        self.options = options
        self.config = config
        self.pending: set[asyncio.Task[Record]] = set()
        self.held: Item | None = None  # refused by the cost cap while others ran: asked again
        self.held_since = 0.0  # perf_counter when the held item was first refused
        self.telemetry = telemetry.current()
        self.span = self.telemetry.start_run(_run_attributes(options)) if self.telemetry else None
        self.done = self.failed = 0

    def start_more(self, window: int) -> None:
        """Start items until ``window`` are in flight, the input ends, a stop or the cost cap."""
        stop, costs = self.options.stop, self.options.costs
        while (
            not (stop and stop.is_set())
            and not (costs is not None and costs.capped)
            and len(self.pending) < window
        ):
            item, self.held = self.held or next(self.source, None), None
            if item is None:
                return
            if costs is not None and item.error is None and not costs.admit(item):
                # not now: in-flight items may free room as they finish (else capped)
                self.held = None if costs.capped else item
                if self.held is not None and not self.held_since:
                    self.held_since = time.perf_counter()
                return
            traced = None
            if self.telemetry is not None:
                traced = (self.telemetry, self.span, self.held_since)
            self.held_since = 0.0
            started = _run_one(self.chain, item, self.config, self.options, traced)
            task = asyncio.create_task(started)
            self.pending.add(task)

    def finished(self, record: Record) -> Record:
        """Count ``record`` for the run's span; return it."""
        if record.error is None:
            self.done += 1
        else:
            self.failed += 1
        return record

    async def cancel_all(self) -> None:
        """Cancel the items still in flight (they leave no record) and wait for them."""
        for task in self.pending:
            task.cancel()
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
        if self.telemetry is not None and self.span is not None:
            self.telemetry.end_run(self.span, self.done, self.failed)


def _run_attributes(options: RunOptions) -> dict[str, Any]:
    """The run span's attributes: the caller's (pipeline, model, input...) and the window's."""
    attributes: dict[str, Any] = {
        "pipelines.run.max_retries": options.retry.max_retries,
        **options.trace_attributes,
    }
    if options.concurrency is not None:
        attributes["pipelines.run.concurrency"] = options.concurrency
    if options.limit is not None:
        attributes["pipelines.run.limit"] = options.limit
    return attributes


async def run_items(
    chain: Runnable[Any, Any],
    items: Iterable[Item],
    options: RunOptions | None = None,
    *,
    config: RunnableConfig | None = None,
) -> AsyncGenerator[Record, None]:
    """Run ``chain`` over ``items``, yielding one :class:`Record` per item as it completes.

    Items are pulled from ``items`` lazily: at most ``options.concurrency``
    (else ``config["max_concurrency"]``, else 4) are in flight, so memory does
    not grow with the input. With ``options.costs`` holding a cap, no item
    starts once the cap would be passed (the item pulled then is not run: a
    resumed run does it). Items whose id was already seen in this run are
    skipped (identical inputs share an id). Records come in completion order;
    each carries its item's id and input.

    Args:
        chain: any ``Runnable`` taking the item's input (text, or the row).
        items: from :func:`lc_async_pipelines.runner.read_items` or built by the caller.
        options: window, retries, limits and stop (:class:`RunOptions`).
        config: ``RunnableConfig`` for every item: ``callbacks`` are added to
            each item's calls, ``metadata`` gets ``item_id``,
            ``max_concurrency`` reaches nested ``abatch`` calls (map-reduce).

    Yields:
        Records. Failures are records with ``error`` set (and ``exception``);
        nothing is raised for them.
    """
    config = config or RunnableConfig()
    options = options or RunOptions()
    window = options.concurrency or max(1, int(config.get("max_concurrency") or 4))
    stop, grace_s = options.stop, options.grace_s
    running = _Running(chain, fresh_items(items, options.skip, options.limit), options, config)
    pending = running.pending
    try:
        running.start_more(window)
        stopping: asyncio.Task[bool] | None = None
        deadline: float | None = None
        while pending:
            if stop is not None and stop.is_set() and deadline is None:
                deadline = asyncio.get_running_loop().time() + grace_s
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if timeout is not None and timeout <= 0:
                break
            waiters: set[asyncio.Future[Any]] = set(pending)
            if stop is not None and deadline is None:
                stopping = stopping or asyncio.ensure_future(stop.wait())
                waiters.add(stopping)
            finished, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                if task is stopping:
                    continue
                pending.discard(task)
                yield running.finished(task.result())
            running.start_more(window)
        if stopping is not None and not stopping.done():
            stopping.cancel()
    finally:
        await running.cancel_all()
