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
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableConfig
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.callbacks.metrics import MetricsCallbackHandler
from lc_async_pipelines.errors import ConfigurationError, DeadlineExceeded, RowError
from lc_async_pipelines.runner._errors import is_transient, retry_after
from lc_async_pipelines.runner._fresh import fresh_items
from lc_async_pipelines.runner._history import AttemptLog, logging_into
from lc_async_pipelines.runner.inputs import Item

if TYPE_CHECKING:  # costs imports this module; the runner only calls the meter's methods
    from lc_async_pipelines.runner.costs import CostMeter

__all__ = ["Record", "RetryPolicy", "RunOptions", "RunSummary", "run_items", "write_records"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures (see ``is_transient``): of each model call, and of items.

    Each model call made through the run's budgeted model is retried on its
    own (``with_budget(..., retry=policy)``), so a map-reduce chunk that fails
    does not repeat its item's calls that succeeded; an item is retried as a
    whole only for failures no call retried (an output that fails its schema).

    Backoff: exponential with full jitter, ``initial * 2**n + U(0, jitter)``
    capped at ``max_wait`` seconds (tenacity's ``wait_exponential_jitter``), or
    the server's ``Retry-After`` when it sent one and it is longer.

    Attributes:
        max_retries: retries after the first attempt (0 = one attempt).
        initial: first backoff, seconds.
        max_wait: backoff cap, seconds.
        jitter: added uniform jitter, seconds.
    """

    max_retries: int = 3
    initial: float = 1.0
    max_wait: float = 30.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        check_number("max_retries", self.max_retries, minimum=0, whole=True)
        for name in ("initial", "max_wait", "jitter"):
            check_number(name, getattr(self, name), minimum=0)

    def wait(self) -> Callable[[RetryCallState], float]:
        """Return the tenacity wait strategy of this policy."""
        exponential = wait_exponential_jitter(
            multiplier=self.initial, max=self.max_wait, jitter=self.jitter
        )

        def wait(state: RetryCallState) -> float:
            backoff = exponential(state)
            exc = state.outcome.exception() if state.outcome else None
            asked = retry_after(exc) if exc else None
            return max(backoff, min(asked, self.max_wait)) if asked is not None else backoff

        return wait

    def retrying(
        self,
        retry_if: Callable[[BaseException], bool] = is_transient,
        *,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> AsyncRetrying:
        """Return tenacity's ``AsyncRetrying`` for this policy (re-raising the last error).

        Args:
            retry_if: which errors are worth another attempt (default: transient ones).
            on_retry: called with the error and the wait (seconds) before each retry.
        """

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None and exc is not None:
                on_retry(exc, float(wait))

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            retry=retry_if_exception(retry_if),
            wait=self.wait(),
            before_sleep=before_sleep,
            reraise=True,
        )


@dataclass
class Record:
    """The outcome of one item, written as one JSON line.

    Attributes:
        id: the item's stable id.
        line: where the item came from in the input file.
        input: what was given to the chain: the text, or the row (an object).
        output: the chain's output (None on failure): text, or a JSON object
            for structured output.
        error: ``{"type", "message"}`` on failure, else None.
        attempts: attempts made (0 when the input itself was bad).
        latency_s: wall time of the item, all attempts and backoff included, seconds.
        ttft_s: time to first token of the item's first model call, seconds.
        usage: input, output and total tokens over all of the item's model calls.
        calls: model calls made (map-reduce makes several).
        throttled: attempts that ended in a rate-limit error (429).
        history: the failed attempts, model calls and item, oldest first (at
            most 20): ``{"stage", "error" (class), "status" (HTTP or None),
            "seconds", "wait_s" (backoff honoured after it, None for the last)}``.
        history_dropped: failed attempts past the 20 kept.
        cost_usd: what the item's model calls cost, USD (``RunOptions.costs``);
            None when a call's model has no price, or costs are not counted.
        cache_saved_usd: what its LLM cache hits would have cost, USD.
        batch_saved_usd: standard price minus Batch API price of its calls, USD.
        exception: the exception behind ``error``, for callers to match by
            class (never written to the records file).
    """

    id: str
    line: int
    input: str | dict[str, Any]
    output: Any = None
    error: dict[str, str] | None = None
    attempts: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    throttled: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    history_dropped: int = 0
    cost_usd: float | None = None
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the item produced an output."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as written to the records file (no ``exception``)."""
        return {
            "id": self.id,
            "line": self.line,
            "input": self.input,
            "output": _jsonable(self.output),
            "error": self.error,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
            "ttft_s": self.ttft_s,
            "usage": self.usage,
            "calls": self.calls,
            "throttled": self.throttled,
            "history": self.history,
            "history_dropped": self.history_dropped,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 9),
            "cache_saved_usd": round(self.cache_saved_usd, 9),
            "batch_saved_usd": round(self.batch_saved_usd, 9),
        }


def _jsonable(value: Any) -> Any:
    """A Pydantic model (structured output) as its JSON object; other values as they are."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def check_number(
    name: str, value: float | None, *, minimum: float, strict: bool = False, whole: bool = False
) -> None:
    """Raise :class:`ConfigurationError` naming ``name`` unless ``value`` is a number in range.

    None passes (the option is unset). ``whole``: an ``int`` is required.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number, got {type(value).__name__}"
        raise ConfigurationError(msg)
    if whole and not isinstance(value, int):
        msg = f"{name} must be a whole number, got {value!r}"
        raise ConfigurationError(msg)
    if not math.isfinite(value):
        msg = f"{name} must be a finite number, got {value!r}"
        raise ConfigurationError(msg)
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        msg = f"{name} must be {bound}, got {value!r}"
        raise ConfigurationError(msg)


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_items` runs: window, retries, limits, stop.

    Attributes:
        concurrency: items in flight at once (None: ``config["max_concurrency"]``, else 4).
        retry: per-item retry policy.
        limit: run at most this many distinct items (skipped ones included).
        skip: ids already done (from :func:`prepare_resume`); not run again.
        stop: when set, no new item starts; items in flight get ``grace_s``
            seconds to finish, then are cancelled and leave no record (a
            resumed run does them).
        grace_s: seconds items in flight get to finish once ``stop`` is set.
        item_timeout_s: deadline of an item, all attempts and backoff included,
            seconds; past it the item is a ``DeadlineExceeded`` error record.
        max_input_tokens: an item whose input is estimated larger (3.5
            characters a token) is a ``RowError`` record and is not sent.
        costs: prices every record's calls (:class:`~lc_async_pipelines.runner.costs.CostMeter`)
            and holds the run's cost cap: once the money spent plus the
            estimate of the items in flight would pass it, no item starts
            (``costs.capped``), and the run ends when those in flight are done.

    Raises:
        ConfigurationError: a value out of range (the message names it).
    """

    concurrency: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limit: int | None = None
    skip: frozenset[str] = frozenset()
    stop: asyncio.Event | None = None
    grace_s: float = 30.0
    item_timeout_s: float | None = None
    max_input_tokens: int | None = None
    costs: CostMeter | None = None

    def __post_init__(self) -> None:
        check_number("concurrency", self.concurrency, minimum=1, whole=True)
        check_number("limit", self.limit, minimum=0, whole=True)
        check_number("grace_s", self.grace_s, minimum=0)
        check_number("item_timeout_s", self.item_timeout_s, minimum=0, strict=True)
        check_number("max_input_tokens", self.max_input_tokens, minimum=1, whole=True)


@dataclass
class RunSummary:
    """Totals of a run: items done and failed, retries, wall time (s), tokens, percentiles.

    ``attempt_errors`` counts every failed attempt (model calls and items) by
    error class and HTTP status (``"RateLimitError 429"``); ``failed_by_class``
    counts the items that failed, by their final error's class. ``cost_usd``,
    ``cache_saved_usd`` and ``batch_saved_usd`` sum the records' (USD);
    ``unpriced`` counts the records that made calls of a model with no price.
    """

    done: int = 0
    failed: int = 0
    retries: int = 0
    throttled: int = 0
    wall_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    unpriced: int = 0
    attempt_errors: dict[str, int] = field(default_factory=dict)
    failed_by_class: dict[str, int] = field(default_factory=dict)
    ttft_s: list[float] = field(default_factory=list, repr=False)
    latency_s: list[float] = field(default_factory=list, repr=False)

    def add(self, record: Record) -> None:
        """Count ``record`` in the totals."""
        if record.ok:
            self.done += 1
        else:
            self.failed += 1
            kind = (record.error or {}).get("type", "?")
            self.failed_by_class[kind] = self.failed_by_class.get(kind, 0) + 1
        failed_attempts = len(record.history) + record.history_dropped
        self.retries += max(0, failed_attempts - (0 if record.ok else 1))
        for entry in record.history:
            key = entry["error"] + (f" {entry['status']}" if entry.get("status") else "")
            self.attempt_errors[key] = self.attempt_errors.get(key, 0) + 1
        self.throttled += record.throttled
        self.input_tokens += record.usage.get("input_tokens", 0)
        self.output_tokens += record.usage.get("output_tokens", 0)
        self.total_tokens += record.usage.get("total_tokens", 0)
        if record.cost_usd is not None:
            self.cost_usd += record.cost_usd
        elif record.calls:
            self.unpriced += 1
        self.cache_saved_usd += record.cache_saved_usd
        self.batch_saved_usd += record.batch_saved_usd
        if record.ttft_s is not None:
            self.ttft_s.append(record.ttft_s)
        if record.attempts:
            self.latency_s.append(record.latency_s)

    def as_dict(self) -> dict[str, Any]:
        """Return the totals, rates, and p50/p95 of item latency and TTFT (seconds)."""
        items = self.done + self.failed
        return {
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "wall_s": round(self.wall_s, 3),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cache_saved_usd": round(self.cache_saved_usd, 6),
            "batch_saved_usd": round(self.batch_saved_usd, 6),
            "unpriced": self.unpriced,
            "output_tokens_per_s": round(self.output_tokens / self.wall_s, 2) if self.wall_s else 0,
            "items_per_s": round(items / self.wall_s, 3) if self.wall_s else 0,
            "latency_p50_s": _percentile(self.latency_s, 0.50),
            "latency_p95_s": _percentile(self.latency_s, 0.95),
            "ttft_p50_s": _percentile(self.ttft_s, 0.50),
            "ttft_p95_s": _percentile(self.ttft_s, 0.95),
            "attempt_errors": dict(sorted(self.attempt_errors.items())),
            "failed_by_class": dict(sorted(self.failed_by_class.items())),
        }


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


def _fail(record: Record, exc: BaseException) -> None:
    record.output = None
    record.exception = exc
    # Error text from an endpoint may echo the request's headers: scrubbed before it is kept.
    record.error = {"type": type(exc).__name__, "message": error_text(exc)}


def _size(value: str | dict[str, Any]) -> int:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return estimate_tokens(text)


async def _run_one(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    options: RunOptions,
) -> Record:
    record = Record(id=item.id, line=item.line, input=item.input)
    if item.error is not None:
        _fail(record, RowError(item.error))
        return record
    size = _size(item.input)
    if options.max_input_tokens is not None and size > options.max_input_tokens:
        message = (
            f"line {item.line}: input of about {size} tokens exceeds the limit of "
            f"{options.max_input_tokens}"
        )
        _fail(record, RowError(message))
        return record
    metrics = MetricsCallbackHandler()
    costs = options.costs.item(item.id) if options.costs is not None else None
    callbacks = [metrics, *([costs] if costs is not None else []), *_handlers(config)]
    item_config: RunnableConfig = {
        **config,
        "callbacks": callbacks,
        "metadata": {**config.get("metadata", {}), "item_id": item.id},
    }
    start = time.perf_counter()
    deadline = asyncio.timeout(options.item_timeout_s)
    log = AttemptLog()
    try:
        async with deadline:
            with logging_into(log):
                await _attempts(chain, item, item_config, options.retry, record, log)
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
    record.latency_s = round(time.perf_counter() - start, 4)
    record.ttft_s = metrics.first_ttft()
    record.usage = metrics.usage()
    record.calls = len(metrics.calls)
    record.history = log.entries
    record.history_dropped = log.dropped
    record.throttled = log.throttled
    if costs is not None and options.costs is not None:
        record.cost_usd = costs.cost_usd
        record.cache_saved_usd = costs.cache_saved_usd
        record.batch_saved_usd = costs.batch_saved_usd
        options.costs.finish(item, costs)
    return record


async def _attempts(
    chain: Runnable[Any, Any],
    item: Item,
    config: RunnableConfig,
    policy: RetryPolicy,
    record: Record,
    log: AttemptLog,
) -> None:
    """Run the item, retrying it whole only for failures that no model call retried."""
    last: list[dict[str, Any]] = []

    def retry_item(exc: BaseException) -> bool:
        return is_transient(exc) and not log.exhausted

    def on_retry(exc: BaseException, wait: float) -> None:
        if last:
            last[-1]["wait_s"] = round(wait, 3)

    async for attempt in policy.retrying(retry_item, on_retry=on_retry):
        with attempt:
            record.attempts = attempt.retry_state.attempt_number
            began = time.perf_counter()
            try:
                record.output = await chain.ainvoke(item.input, config)
            except Exception as exc:
                if not log.logged(exc):  # not a model call's error: log it at item level
                    last.append(log.add(exc, stage="item", seconds=time.perf_counter() - began))
                raise


def _handlers(config: RunnableConfig) -> list[BaseCallbackHandler]:
    callbacks = config.get("callbacks")
    if callbacks is None:
        return []
    if isinstance(callbacks, list):
        return list(callbacks)
    return list(callbacks.handlers)


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
    costs = options.costs
    source = fresh_items(items, options.skip, options.limit)
    pending: set[asyncio.Task[Record]] = set()

    def refill() -> None:
        while (
            not (stop and stop.is_set())
            and not (costs is not None and costs.capped)
            and len(pending) < window
        ):
            item = next(source, None)
            if item is None:
                return
            if costs is not None and item.error is None and not costs.admit(item):
                return  # the cap: nothing more starts in this session
            pending.add(asyncio.create_task(_run_one(chain, item, config, options)))

    try:
        refill()
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
                yield task.result()
            refill()
        if stopping is not None and not stopping.done():
            stopping.cancel()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def write_records(
    records: AsyncIterator[Record],
    out: TextIO,
    *,
    on_record: Callable[[Record], Awaitable[None] | None] | None = None,
) -> RunSummary:
    """Append each record to ``out`` as one JSON line, flushed at once, and total them.

    Returns:
        The run's :class:`RunSummary` (``wall_s`` measured over the whole write).
    """
    summary = RunSummary()
    start = time.perf_counter()
    async for record in records:
        out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        out.flush()
        summary.add(record)
        if on_record is not None:
            result = on_record(record)
            if result is not None:
                await result
    summary.wall_s = time.perf_counter() - start
    return summary


def summary_path(output: Path) -> Path:
    """Return where the run summary JSON goes beside ``output``."""
    return output.with_name(output.name + ".summary.json")
