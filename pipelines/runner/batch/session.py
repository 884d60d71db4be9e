"""The provider's Batch API behind any chain: a run's model calls go in batches, at the batch price.

The session is provider-neutral; a
:class:`~lc_async_pipelines.runner.batch.provider.BatchProvider` does what
differs (OpenAI's Batch API under a ``ChatOpenAI``, Anthropic's Message
Batches under a ``ChatAnthropic``; see
:func:`~lc_async_pipelines.runner.batch.providers.provider_for`). What follows
tells the OpenAI case; Anthropic's differs where its adapter says (no file
upload: its requests travel with the create call; a ``custom_id`` is the same
hash).

OpenAI (and compatible servers) run batch jobs at about half the price of
single requests: upload a JSONL file of requests (``POST /v1/files``,
``purpose=batch``), create a batch (``POST /v1/batches``, a 24-hour window),
poll it, download the output and error files
(https://platform.openai.com/docs/guides/batch). LangChain has no way to use
it (langchain-ai/langchain#28508). :class:`BatchSession` puts it under any
chain, unchanged:

    async with BatchSession(chat_model, BatchOptions(state_path=batches_path(output))) as batch:
        llm = with_budget(batch.chat_model, RateBudget())   # no RPM/TPM: batches have none
        chain = build_map_reduce_summary_chain(llm)
        async for record in run_items(chain, items, RunOptions(concurrency=10_000), config={}):
            ...

How: :attr:`BatchSession.chat_model` is a copy of the ``ChatOpenAI`` whose
OpenAI client sends through an HTTP transport of ours. A chat completion (or
responses) request it would have sent is not sent: its body (exactly the
SDK's, so structured output, ``max_completion_tokens``, ``extra_body`` are
all there) is parked, keyed by a hash of the body (``custom_id``), and the
calling item waits. A *stage* closes when, for ``settle_s`` seconds, no
call has been parked and the process has been idle: every item in flight is
waiting on a batch (in a map-reduce, all the map calls of every item). Or
``window_s`` after its first call, or when it fills a batch. Its calls are
split by model and under the limits (:class:`BatchLimits`: requests, bytes,
enqueued tokens), uploaded and submitted; each batch is polled with
exponential backoff (tenacity), and its results are handed back to the
waiting calls as the HTTP responses they stand for, so LangChain, the LLM
cache, callbacks and usage work as for single requests. A map-reduce
therefore runs as two batches; the runner writes each record as its item's
last result arrives. The replies carry
``response_metadata["service_tier"] == "batch"``, which
:mod:`lc_async_pipelines.runner.costs` prices at the batch price. The LLM
cache sits before the model, so a cache hit never enters a batch.

Resume: each batch is recorded in ``OUTPUT.batches.json`` (atomic rewrite)
before it is created: its input file, then its id, status and the
``custom_id`` s it carries. A resumed run's call whose ``custom_id`` is there
waits on that batch (polled again, output downloaded again) instead of being
sent again: a ``kill -9`` while a batch is in flight costs no second batch.
A batch recorded without an id (killed between upload and create) is looked
for among the endpoint's batches by its input file before it is created.

Failures: a failed line comes back as its HTTP error (a 500 for a line with
only an error, a 503 for a line an expired or cancelled batch did not reach,
and for every line of a failed batch), so the per-call retry of
:func:`~lc_async_pipelines.runner.with_budget` retries it, bounded by its
policy: in the next batch (``retry="batch"``), or sent on its own
(``retry="request"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from langchain_core.language_models import BaseChatModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_exponential_jitter,
)

from lc_async_pipelines import telemetry
from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.runner.batch._files import (
    BatchRequest,
    LineResult,
    body_hash,
    split_requests,
)
from lc_async_pipelines.runner.batch._jobs import (
    TERMINAL,
    Parked,
    TokenPool,
    TrackedBatch,
    read_state,
    record_batch,
    write_state,
)
from lc_async_pipelines.runner.batch.options import BatchOptions, BatchStats
from lc_async_pipelines.runner.batch.provider import BatchProvider, BatchStatus
from lc_async_pipelines.runner.batch.providers import provider_for
from lc_async_pipelines.telemetry.names import (
    BATCH_DOWNLOAD_SPAN,
    BATCH_UPLOAD_SPAN,
    BATCH_WAIT_SPAN,
)

__all__ = ["BatchSession", "batches_in_flight"]

_IDLE_TICK_S = 0.25  # how often a stage waiting to close looks at the process's CPU
_BUSY_CPU = 0.5  # share of one core above which the process is still at work

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stage(name: str, model: str, requests: int) -> Iterator[None]:
    """A Batch API stage's span (upload, wait, download) when telemetry is on."""
    tel = telemetry.current()
    if tel is None:
        yield
        return
    attributes = {"gen_ai.request.model": model, "pipelines.batch.requests": requests}
    with tel.stage(name, attributes):
        yield


class BatchSession:
    """Batches every call of :attr:`chat_model` through the provider's Batch API; see the module.

    Use as ``async with BatchSession(chat_model, options) as batch: ...``;
    hand :attr:`chat_model` to the chain (through ``with_cache`` and
    ``with_budget``, as the bare model). Leaving the block stops polling
    (batches in flight go on at the provider; a resumed run picks them up).

    For every item of a stage to be in it, run items with a window as large
    as the stage (``RunOptions(concurrency=...)``), no ``max_concurrency`` in
    the config (a map-reduce's chunks all at once) and a budget without RPM,
    TPM or ``max_in_flight``: a call held back by them misses its stage and
    goes in the next batch.

    Attributes:
        stats: what this session did (:class:`BatchStats`).
        options: the :class:`BatchOptions`.
        provider: the :class:`BatchProvider` that talks to the provider's batch API.

    Raises:
        ConfigurationError: on construction, no provider batches the model
            (``ChatOpenAI`` and ``ChatAnthropic`` do); on entry, the endpoint
            has no batch API, cannot be reached, or the state file is not ours.
    """

    def __init__(
        self,
        chat_model: BaseChatModel,
        options: BatchOptions | None = None,
        provider: BatchProvider | None = None,
    ) -> None:
        """Prepare batching for ``chat_model`` under ``options``.

        ``provider``: the batch API to use (default :func:`provider_for` the model).
        """
        self.options = options or BatchOptions()
        self.stats = BatchStats()
        self.provider = provider or provider_for(chat_model, self.options)
        self._chat_model = self.provider.batched_model(self._call, self._count_direct)
        self._entries: list[dict[str, Any]] = []
        self._known: dict[str, TrackedBatch] = {}
        self._occurrences: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._pending: list[Parked] = []
        self._pending_bytes = 0
        self._first_park = self._last_park = 0.0
        self._parked = asyncio.Event()
        self._wake = asyncio.Event()
        self._flush_now = False
        self._pools: dict[str, TokenPool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        self._counts: dict[str, tuple[int, int]] = {}  # batch id -> (lines ended, lines)

    @property
    def chat_model(self) -> BaseChatModel:
        """The chat model whose calls go in batches (a copy; the original is unchanged)."""
        return self._chat_model

    async def __aenter__(self) -> BatchSession:
        self._load()
        try:
            await self.provider.open()
        except BaseException:
            await self.provider.aclose()
            raise
        self._collector = asyncio.create_task(self._collect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop collecting and polling, save the state, close our clients (idempotent)."""
        tasks = [t for t in (self._collector, *self._tasks) if t is not None]
        tasks += [b.task for b in self._known.values() if b.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._collector = None
        self._tasks.clear()
        self._save()
        await self.provider.aclose()

    def flush(self) -> None:
        """Close the current stage now: its parked calls are submitted at once."""
        self._flush_now = True
        self._wake.set()

    def progress(self) -> tuple[int, int]:
        """Lines ended (completed or failed) and lines, over this run's batches in progress.

        As the provider's ``request_counts`` said at the last poll of each
        batch not yet ended; ``(0, 0)`` when none is in progress or none was
        polled yet.
        """
        ended = total = 0
        for entry in self._entries:
            batch_id = entry.get("id")
            if batch_id is None or entry.get("status") in TERMINAL:
                continue
            done, lines = self._counts.get(str(batch_id), (0, int(entry.get("requests") or 0)))
            ended, total = ended + done, total + lines
        return ended, total

    async def cancel(self) -> int:
        """Cancel this run's batches in progress at the provider; return how many were asked.

        Providers cancel whole batches (the provider's ``cancel``). OpenAI
        (``POST /v1/batches/{id}/cancel``): a batch stays ``cancelling`` for
        up to 10 minutes, then ``cancelled``, with the lines already done in
        its output file
        (https://platform.openai.com/docs/api-reference/batch/cancel). Their
        results come back to their calls as usual; the others come back as
        503 ``batch_cancelled``. A batch that ended meanwhile is left as it is.
        """
        asked = 0
        for entry in self._entries:
            batch_id = entry.get("id")
            if batch_id is None or entry.get("status") in TERMINAL:
                continue
            try:
                await self.provider.cancel(str(batch_id))
                asked += 1
            except Exception as exc:  # ended meanwhile, or refused: its results stand
                log.info("batch %s: not cancelled (%s)", batch_id, error_text(exc))
        return asked

    async def _retrieve(self, batch_id: str) -> BatchStatus:
        """One poll of a batch; its ``request_counts`` kept for :meth:`progress`."""
        found = await self.provider.retrieve(batch_id)
        counts = found.fields.get("request_counts")
        if isinstance(counts, dict):
            if "total" in counts:  # OpenAI: total, completed, failed
                done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                self._counts[batch_id] = (done, int(counts["total"] or 0))
            else:  # Anthropic: processing, succeeded, errored, canceled, expired
                total = sum(int(v or 0) for v in counts.values())
                self._counts[batch_id] = (total - int(counts.get("processing") or 0), total)
        return found

    # --- the state file -------------------------------------------------------------

    def _load(self) -> None:
        path = self.options.state_path
        if path is None or not path.exists():
            return
        entries = read_state(path)
        for entry in entries:
            batch = TrackedBatch(entry)
            for cid in entry["custom_ids"]:
                self._known[str(cid)] = batch
        self._entries = entries

    def _save(self) -> None:
        if self.options.state_path is not None:
            write_state(self.options.state_path, self._entries)

    # --- calls --------------------------------------------------------------------

    def _count_direct(self) -> None:
        self.stats.requests_direct += 1

    async def _call(self, endpoint: str, body: dict[str, Any]) -> LineResult | None:
        """The result of one call: from a batch, or None to send it on its own."""
        key = body_hash(endpoint, body)
        if self.options.retry == "request" and self._failed[key] > 0:
            self._failed[key] -= 1
            return None
        cid = f"{key}-{self._occurrences[key]}"
        self._occurrences[key] += 1
        known = self._known.get(cid)
        if known is not None:
            self.stats.requests_resumed += 1
            future = self._wait_known(known, cid)
        else:
            future = self._park(self.provider.request(cid, endpoint, body))
        result = await future
        if not result.ok:
            self.stats.lines_failed += 1
            self._failed[key] += 1
            return result
        return LineResult(result.status, {**result.body, "service_tier": "batch"})

    def _wait_known(self, batch: TrackedBatch, cid: str) -> asyncio.Future[LineResult]:
        future: asyncio.Future[LineResult] = asyncio.get_running_loop().create_future()
        if batch.results is not None:
            future.set_result(batch.results.pop(cid, batch.missing()))
            return future
        batch.waiters[cid] = future
        if batch.task is None:
            self.stats.batches_resumed += 1
            batch.task = asyncio.create_task(self._follow(batch))
        return future

    def _park(self, request: BatchRequest) -> asyncio.Future[LineResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LineResult] = loop.create_future()
        if not self._pending:
            self._first_park = loop.time()
        self._last_park = loop.time()
        self._pending.append(Parked(request, future))
        self._pending_bytes += len(request.line)
        self._parked.set()
        if self._full():
            self._wake.set()
        return future

    def _full(self) -> bool:
        limits = self.options.limits
        return len(self._pending) >= limits.max_requests or self._pending_bytes >= limits.max_bytes

    # --- stages -------------------------------------------------------------------

    async def _collect(self) -> None:
        """Close a stage when calls stop coming and the process is idle.

        Or when the window ends, a batch is full, or :meth:`flush` is called.
        Idle matters: thousands of items move through a chain's steps in
        lockstep, so their calls can pause for seconds while the process is
        busy rendering the next prompts (measured: 1.1 s with 5,000 items).
        The process counts as busy while its CPU time grew by more than half
        the wall time since the last look.
        """
        loop = asyncio.get_running_loop()
        settle, window = self.options.settle_s, self.options.window_s
        tick = min(settle, _IDLE_TICK_S) or _IDLE_TICK_S
        while True:
            await self._parked.wait()
            busy_until = loop.time()
            wall, cpu = loop.time(), time.process_time()
            while not (self._flush_now or self._full()):
                now = loop.time()
                if now - wall > 0 and (time.process_time() - cpu) / (now - wall) > _BUSY_CPU:
                    busy_until = now
                wall, cpu = now, time.process_time()
                quiet_since = max(self._last_park, busy_until)
                if now >= min(quiet_since + settle, self._first_park + window):
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), tick)
            self._flush_now = False
            self._close_stage()

    def _close_stage(self) -> None:
        parked = [p for p in self._pending if not p.future.done()]
        self._pending, self._pending_bytes = [], 0
        self._parked.clear()
        futures = {p.request.custom_id: p.future for p in parked}
        for part in split_requests([p.request for p in parked], self.options.limits):
            task = asyncio.create_task(
                self._submit(part, {r.custom_id: futures[r.custom_id] for r in part})
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _pool(self, model: str) -> TokenPool:
        if model not in self._pools:
            self._pools[model] = TokenPool(self.options.limits.max_tokens)
        return self._pools[model]

    async def _submit(
        self, part: list[BatchRequest], futures: dict[str, asyncio.Future[LineResult]]
    ) -> None:
        """Upload one batch's requests if the provider takes that step, record it, create it.

        Then follow it to its results.
        """
        model, endpoint = part[0].model, part[0].endpoint
        tokens = sum(r.tokens for r in part)
        async with self._pool(model).hold(tokens):
            try:
                with _stage(BATCH_UPLOAD_SPAN, model, len(part)):
                    uploaded = await self.provider.upload(part)
            except Exception as exc:  # every call of the part gets the failure
                result = self.provider.as_result(exc)
                for future in futures.values():
                    if not future.done():
                        future.set_result(result)
                return
            entry: dict[str, Any] = {
                "id": None,
                "provider": self.provider.name,
                **uploaded,
                "status": "uploaded" if uploaded else "recorded",
                "endpoint": endpoint,
                "model": model,
                "requests": len(part),
                "tokens": tokens,
                "created_at": int(time.time()),
                "custom_ids": [r.custom_id for r in part],
            }
            self._entries.append(entry)
            self._save()  # before the batch exists: a kill from here on pays no second one
            batch = TrackedBatch(entry)
            batch.held = batch.fresh = True
            batch.part = part
            batch.waiters.update(futures)
            for cid in entry["custom_ids"]:
                self._known[cid] = batch
            self.stats.requests_batched += len(part)
            await self._follow(batch)

    async def _follow(self, batch: TrackedBatch) -> None:
        """Create the batch if it has no id, poll it to its end, and hand out its results."""
        entry = batch.entry
        try:
            if batch.held or batch.terminal:
                await self._run(batch)
            else:  # an earlier session's batch in progress: its tokens count again
                batch.held = True
                async with self._pool(str(entry.get("model") or "")).hold(
                    int(entry.get("tokens", 0))
                ):
                    await self._run(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the waiting calls fail with it; a later call follows again
            log.warning("batch %s: %s", entry.get("id"), error_text(exc))
            batch.fail(self.provider.as_result(exc))
        finally:
            batch.task = None
            batch.held = False
            batch.part = None  # created or given up: its requests are no longer needed

    async def _run(self, batch: TrackedBatch) -> None:
        entry = batch.entry
        model, requests = str(entry.get("model") or ""), int(entry.get("requests") or 0)
        with _stage(BATCH_WAIT_SPAN, model, requests):
            if entry.get("id") is None and not batch.terminal:
                await self._create(entry, batch.part, look_first=not batch.fresh)
            if entry.get("id") is None:  # never created: its calls are sent again
                batch.resolve({})
                return
            if not batch.terminal:
                record_batch(entry, await self._poll(str(entry["id"])))
                self._save()
        with _stage(BATCH_DOWNLOAD_SPAN, model, requests):
            results = await self.provider.results(entry)
        batch.resolve(results)

    async def _create(
        self, entry: dict[str, Any], part: list[BatchRequest] | None, *, look_first: bool
    ) -> None:
        """Create the batch of a recorded entry, unless the endpoint already has it.

        ``look_first``: the entry was recorded by an earlier session, which may
        have created the batch before it was killed; retries always look first.
        A batch whose requests the provider does not keep (``keeps_input``
        False) and that an earlier session recorded but did not create is
        marked ``expired``: its calls fail with a 503 and are sent again.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception(self.provider.is_transient),
            wait=wait_exponential_jitter(initial=1, max=30),
            stop=stop_after_attempt(5),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                found = None
                if look_first or attempt.retry_state.attempt_number > 1:
                    taken = {str(e["id"]) for e in self._entries if e.get("id")}
                    found = await self.provider.find(entry, taken)
                if found is None and part is None and not self.provider.keeps_input:
                    entry.update(status="expired", errors="recorded, never created: sent again")
                    self._save()
                    return
                if found is None:
                    found = await self.provider.create(entry, part, self.options.metadata)
                    self.stats.batches_created += 1
                    log.info(
                        "batch %s: %d requests of %s submitted",
                        found.id,
                        entry["requests"],
                        entry["model"],
                    )
                record_batch(entry, found)
                self._save()

    async def _poll(self, batch_id: str) -> BatchStatus:
        retrying = AsyncRetrying(
            retry=retry_if_result(lambda b: not b.ended)
            | retry_if_exception(self.provider.is_transient),
            wait=wait_exponential(
                multiplier=max(self.options.poll_initial_s, 0.001),
                max=self.options.poll_max_s,
            ),
            reraise=True,
        )
        return await retrying(self._retrieve, batch_id)


def batches_in_flight(path: Path) -> int:
    """Return how many batches ``path`` (an ``OUTPUT.batches.json``) records as not yet ended.

    Such a batch is submitted, so paid for once it ends: only a run with the
    batch API collects it (0 when ``path`` does not exist).

    Raises:
        ConfigurationError: not a batches file of this version.
    """
    if not path.is_file():
        return 0
    return sum(entry.get("status") not in TERMINAL for entry in read_state(path))
