"""Runs spread over Ray actors, each an asyncio runner; the driver stays the only writer.

:func:`run_items_on_ray` sends items to ``workers`` Ray async actors
(https://docs.ray.io/en/latest/ray-core/actors/async_api.html). Each actor
builds the chain once, inside its own :func:`~lc_async_pipelines.session.model_session`
(model, budget, cache, per-call retries), and runs each item it is sent
through :func:`~lc_async_pipelines.runner.run_items`, so retries, deadlines and
error records are the same as in one process. The driver reads the items
lazily, keeps at most ``recipe.concurrency`` items in flight on each actor, and
yields the records as they come back, in completion order: the caller writes
them (``write_records``), so the records file, its manifest, lock and resume
work as for a run in one process.

Records cross processes as plain dicts (``Record.to_dict()``) and are rebuilt
on the driver. An exception does not cross: a provider's error may hold the
request's headers, so only its class name and scrubbed message (the record's
``error``) travel; ``Record.exception`` is rebuilt for this library's own
error classes and None for others.

A worker process that dies (``kill -9``, out of memory, its machine lost):
Ray restarts the actor (``max_restarts``, running its constructor again), its
calls in flight fail with ``RayActorError`` on the driver, and their items go
to the front of the queue, for any worker. Actor calls are at-most-once
(``max_task_retries=0``): "the exception may be thrown even though the task
did indeed execute" (https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html),
so the driver yields each item id at most once. An item in flight on
:data:`MAX_WORKER_LOSSES` dying workers becomes an error record (resume runs it
again), so an item that kills its worker cannot loop for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import threading
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lc_async_pipelines._scrub import error_text, register_secret
from lc_async_pipelines.errors import (
    BudgetUnavailable,
    ConfigurationError,
    DeadlineExceeded,
    EmbeddedModelError,
    InputError,
    OutputValidationError,
    PipelinesError,
    RowError,
    WorkersLost,
)
from lc_async_pipelines.runner._fresh import fresh_items
from lc_async_pipelines.runner.core import Record, RetryPolicy, RunOptions, check_number, run_items
from lc_async_pipelines.runner.inputs import Item

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable, RunnableConfig

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import PipelineSpec

__all__ = ["MAX_WORKER_LOSSES", "RAY_NAMESPACE", "ChainRecipe", "run_items_on_ray"]

RAY_NAMESPACE = "lc_async_pipelines"
"""Ray namespace of the worker actors, named ``worker-<run>-<n>`` (see ``ray.get_actor``)."""

MAX_WORKER_LOSSES = 3
"""Dying workers an item may be in flight on before it becomes an error record."""

# Restarts of each actor (its constructor runs again); past them it is dead and
# the run goes on with the others.
_ACTOR_RESTARTS = 8
# Calls beyond the item window: start, pid, close.
_CONTROL_CALLS = 4
_CLOSE_TIMEOUT_S = 15.0
# One llama-server for all local workers: its slots (each 4,096 tokens of context).
_EMBEDDED_SLOTS = 8
_OWN_ERRORS: dict[str, type[PipelinesError]] = {
    cls.__name__: cls
    for cls in (
        BudgetUnavailable,
        ConfigurationError,
        DeadlineExceeded,
        EmbeddedModelError,
        InputError,
        OutputValidationError,
        RowError,
    )
}


@dataclass(frozen=True)
class ChainRecipe:
    """Everything a worker needs to build the same chain: picklable, no secret in ``repr``.

    Attributes:
        spec: the pipeline (a registered one, ``module:attr``, or a prompt
            pipeline); its factory must be importable, or picklable by
            cloudpickle, on every worker.
        options: the factory's keyword arguments (``{"max_words": 80}``).
        settings: the model settings; the key is a ``SecretStr``.
        budget_url: a Redis URL (``redis://HOST:PORT/DB``) for one budget shared
            by every worker; None: each worker has its own in-memory budget
            holding ``1/workers`` of ``rpm`` and ``tpm``.
        budget_key: the shared budget's key (None: derived from endpoint and model).
        rpm: requests per minute, the whole run (all workers).
        tpm: tokens per minute, the whole run.
        cache: a Redis URL for the shared LLM cache, or None. An SQLite path is
            refused: one file cannot be shared by processes on many machines.
        cache_ttl_s: time-to-live of each cache entry, seconds (None: no expiry).
        concurrency: items in flight on each worker (its window).
        max_in_flight: model calls in flight on each worker, nested ones
            included (None: ``concurrency``).
        fallback_model: another model on the same endpoint, tried when a call
            to the main one fails (``model_session(fallback_model=...)``).
        retry: retries of each model call (``model_session(retry=...)``).

    Raises:
        ConfigurationError: a value out of range, an SQLite cache, or a
            budget or cache URL that is not ``redis://``, ``rediss://`` or ``unix://``.
    """

    spec: PipelineSpec
    options: dict[str, Any]
    settings: ModelSettings
    # Out of repr: a Redis URL may carry a password (redis://:secret@host).
    budget_url: str | None = field(default=None, repr=False)
    budget_key: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    cache: str | None = field(default=None, repr=False)
    cache_ttl_s: float | None = None
    concurrency: int = 8
    max_in_flight: int | None = None
    fallback_model: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        from lc_async_pipelines.runner.redis import REDIS_SCHEMES

        check_number("concurrency", self.concurrency, minimum=1, whole=True)
        check_number("rpm", self.rpm, minimum=0, strict=True)
        check_number("tpm", self.tpm, minimum=0, strict=True)
        check_number("cache_ttl_s", self.cache_ttl_s, minimum=0, strict=True)
        check_number("max_in_flight", self.max_in_flight, minimum=1, whole=True)
        if self.cache is not None and urlsplit(str(self.cache)).scheme not in REDIS_SCHEMES:
            msg = (
                f"cache {self.cache}: workers on Ray need a shared cache, redis://HOST:PORT/DB; "
                "one SQLite file cannot be shared by processes on many machines"
            )
            raise ConfigurationError(msg)
        if self.budget_url is not None and urlsplit(self.budget_url).scheme not in REDIS_SCHEMES:
            msg = "budget_url: expected redis://HOST:PORT/DB, rediss:// or unix://"
            raise ConfigurationError(msg)
        if self.cache_ttl_s is not None and self.cache is None:
            msg = "cache_ttl_s goes with a Redis cache"
            raise ConfigurationError(msg)
        if self.budget_key is not None and self.budget_url is None:
            msg = "budget_key goes with budget_url (a shared budget)"
            raise ConfigurationError(msg)
        for url in (self.budget_url, self.cache):
            if url is not None:
                register_secret(urlsplit(url).password)  # scrubbed from error texts


class _Worker:
    """One Ray actor: builds the model session and chain once, runs the items it is sent.

    Wrapped with ``ray.remote`` by the driver. Ray runs the async methods on
    the actor's event loop, concurrently, up to ``max_concurrency``.
    """

    def __init__(self, recipe: ChainRecipe, options: RunOptions, share: float) -> None:
        register_secret(recipe.settings.api_key)  # scrubbed from this process's error texts
        self._recipe = recipe
        self._options = options
        self._share = share
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._chain: Runnable[Any, Any] | None = None
        self._config: RunnableConfig = {"max_concurrency": recipe.concurrency}
        self._description = ""

    async def pid(self) -> int:
        """Return this worker's process id."""
        return os.getpid()

    async def start(self) -> str:
        """Build the model session and the chain (once); return the model's description."""
        await self._started()
        return self._description

    async def run(
        self, item_id: str, line: int, value: str | dict[str, Any], error: str | None
    ) -> dict[str, Any]:
        """Run one item; return its record as ``Record.to_dict()``."""
        chain = await self._started()
        item = Item(item_id, line, value, error)
        records = [r async for r in run_items(chain, (item,), self._options, config=self._config)]
        return records[0].to_dict()

    async def close(self) -> None:
        """Close the model session (cache, budget connections, an embedded server)."""
        async with self._lock:
            stack, self._stack, self._chain = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _started(self) -> Runnable[Any, Any]:
        if self._chain is not None:
            return self._chain
        async with self._lock:
            if self._chain is None:
                await self._open()
        assert self._chain is not None
        return self._chain

    async def _open(self) -> None:
        from lc_async_pipelines.runner.redis import RedisCache, open_budget, open_cache
        from lc_async_pipelines.session import model_session

        recipe, settings = self._recipe, self._recipe.settings
        # In memory, each worker holds its share of the run's limits; in Redis, all of them.
        share = 1.0 if recipe.budget_url else self._share
        budget = open_budget(
            recipe.budget_url,
            key=recipe.budget_key,
            base_url=settings.base_url,
            model=settings.model,
            rpm=recipe.rpm * share if recipe.rpm else None,
            tpm=recipe.tpm * share if recipe.tpm else None,
            max_in_flight=recipe.max_in_flight or recipe.concurrency,
        )
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(budget)  # BudgetUnavailable when Redis is down
            cache = open_cache(recipe.cache, ttl_s=recipe.cache_ttl_s)
            if isinstance(cache, RedisCache):  # the recipe refuses any other
                stack.push_async_callback(cache.aclose)
            session = await stack.enter_async_context(
                model_session(
                    settings,
                    budget=budget,
                    cache=cache,
                    fallback_model=recipe.fallback_model,
                    parallel=recipe.concurrency,
                    retry=recipe.retry,
                )
            )
            self._chain = recipe.spec.build(session.llm, **recipe.options)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._description = session.description


def _record(data: dict[str, Any]) -> Record:
    """Rebuild a record shipped as ``Record.to_dict()``; the exception for our own classes."""
    record = Record(**data)
    error = record.error
    if error is not None and error.get("type") in _OWN_ERRORS:
        record.exception = _OWN_ERRORS[error["type"]](error.get("message", ""))
    return record


def _lost(item: Item, exc: BaseException, attempts: int) -> Record:
    """The error record of an item whose workers died under it ``attempts`` times."""
    message = f"{attempts} workers died while running this item; last: {error_text(exc)}"
    return Record(
        id=item.id,
        line=item.line,
        input=item.input,
        error={"type": type(exc).__name__, "message": message[:2000]},
    )


def _failed(item: Item, exc: BaseException) -> Record:
    """The error record of an item whose worker raised instead of answering (start failed)."""
    record = Record(
        id=item.id,
        line=item.line,
        input=item.input,
        error={"type": type(exc).__name__, "message": error_text(exc)},
    )
    record.exception = exc if isinstance(exc, PipelinesError) else None
    return record


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """Keep the caller's SIGINT/SIGTERM handlers across ``ray.init``.

    ``ray.init`` sets a SIGTERM handler that exits the process (``ray/_private/worker.py``
    and ``node.py``, Ray 2.60), which would replace the command line's graceful stop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        msg = (
            f"the Ray engine needs the ray extra ({exc.name} is missing): "
            "pip install 'lc-async-pipelines[ray]'"
        )
        raise ConfigurationError(msg) from None
    return ray


def _start_error(cause: BaseException) -> PipelinesError:
    """The error a run raises when a worker cannot build its model session."""
    if isinstance(cause, PipelinesError):
        return cause
    msg = f"a Ray worker could not start: {type(cause).__name__}: {error_text(cause)}"
    return ConfigurationError(msg)


async def _started_all(ray: Any, actors: list[Any]) -> None:
    """Build every worker's session; one that cannot start fails the run, as the CLI would."""
    try:
        await asyncio.gather(*(a.start.remote() for a in actors))
    except ray.exceptions.RayTaskError as exc:
        raise _start_error(exc.cause) from None
    except ray.exceptions.RayActorError as exc:  # its constructor failed: an import, a pickle
        first = error_text(exc).strip().splitlines()[-1:] or ["no detail"]
        msg = f"a Ray worker could not be created: {first[0][:500]}"
        raise ConfigurationError(msg) from None


@dataclass
class _Flight:
    """A call in flight: an item sent to a worker, or a probe of a worker that failed."""

    worker: int
    item: Item | None = None
    ref: Any = None


async def run_items_on_ray(
    recipe: ChainRecipe,
    items: Iterable[Item],
    options: RunOptions,
    *,
    workers: int,
    address: str | None = None,
) -> AsyncGenerator[Record, None]:
    """Run ``recipe``'s chain over ``items`` on ``workers`` Ray actors; yield records as they come.

    The driver (this coroutine) pulls items lazily and keeps at most
    ``recipe.concurrency`` in flight on each worker, so memory does not grow
    with the input. ``options`` behave as in :func:`run_items`: ``skip`` and
    repeated ids are not sent, ``limit`` counts distinct items, ``stop`` sends
    no new item and gives those in flight ``grace_s`` seconds (then they are
    cancelled and leave no record), ``item_timeout_s``, ``retry`` and
    ``max_input_tokens`` apply on the workers. ``options.concurrency`` is not
    used: the window is ``recipe.concurrency`` per worker.

    Ray: with ``address`` None and Ray not yet initialized in this process, a
    local Ray starts here (``ray.init`` took 4-6 s on a busy 2-core machine,
    and the workers' model sessions 10-20 s more; no dashboard, quiet logs)
    and is shut down at the end; with an ``address`` (``"auto"``,
    ``"HOST:6379"``, ``"ray://HOST:10001"``), this connects to that cluster
    and leaves it running. If this process already called ``ray.init``, that
    Ray is used as it is. Workers need this package (and a ``module:attr``
    pipeline's module) importable: on a cluster, install it on every node or
    call ``ray.init(runtime_env=...)`` first. Workers take no CPU in Ray's
    scheduling (they wait on the network) and are spread over the nodes.

    The embedded model: with a local Ray started here, one ``llama-server``
    started here serves every worker; otherwise each worker starts its own.

    Args:
        recipe: how each worker builds the chain, its budget and cache.
        items: from :func:`~lc_async_pipelines.runner.read_items` or built by the caller.
        options: skip, limit, stop, grace, deadline, retries (see above).
        workers: Ray actors to start (>= 1).
        address: a running Ray cluster, or None for a local one.

    Yields:
        One :class:`Record` per item, each id at most once. Records come back
        as ``Record.to_dict()`` builds them: structured outputs are JSON
        objects, not Pydantic models.

    Raises:
        ConfigurationError: ``workers`` < 1, Ray not installed, or a worker's
            model session cannot be built (the cause's class and scrubbed text).
        BudgetUnavailable: a worker cannot reach the shared budget at start.
        CacheUnavailable: a worker cannot reach the shared cache at start.
        EmbeddedModelError: the embedded model cannot start.
        WorkersLost: every worker died past its restarts.
    """
    check_number("workers", workers, minimum=1, whole=True)
    ray = _import_ray()
    stack = AsyncExitStack()
    try:
        starting = not ray.is_initialized()
        recipe = await _with_embedded_server(stack, recipe, local=starting and address is None)
        if starting:
            with _signals_kept():
                ray.init(**_init_kwargs(address))
            stack.callback(ray.shutdown)
        actors = _spawn(ray, recipe, options, workers)
        stack.push_async_callback(_close_all, ray, actors)
        await _started_all(ray, actors)
        async for record in _drive(ray, actors, recipe.concurrency, items, options):
            yield record
    finally:
        await stack.aclose()


def _init_kwargs(address: str | None) -> dict[str, Any]:
    import logging

    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is not None:
        return {"address": address, **quiet}
    # Logical CPUs for Ray's scheduler: workers ask for none (they wait on the network),
    # so this only keeps Ray from pre-starting a process per core of a big machine.
    return {"num_cpus": 2, "include_dashboard": False, **quiet}


async def _with_embedded_server(
    stack: AsyncExitStack, recipe: ChainRecipe, *, local: bool
) -> ChainRecipe:
    """Start one embedded server for local workers to share; return the recipe pointing at it."""
    settings = recipe.settings
    if not local or not settings.uses_embedded or settings.embedded_url:
        return recipe
    from lc_async_pipelines.embedded import EmbeddedModelServer

    server = await stack.enter_async_context(EmbeddedModelServer(parallel=_EMBEDDED_SLOTS))
    shared = settings.model_copy(update={"embedded_url": server.base_url})
    return replace(recipe, settings=shared)


def _spawn(ray: Any, recipe: ChainRecipe, options: RunOptions, workers: int) -> list[Any]:
    """Create the worker actors; they start in the background.

    Raises:
        ConfigurationError: the recipe cannot be sent to them (a ready Runnable
            holding a client does not pickle).
    """
    # Each worker runs one item per call: skip, limit and stop live on the driver.
    worker_options = replace(options, concurrency=1, skip=frozenset(), limit=None, stop=None)
    remote = ray.remote(_Worker)
    run = uuid.uuid4().hex[:8]
    actors: list[Any] = []
    for n in range(workers):
        try:
            actor = remote.options(
                name=f"worker-{run}-{n}",
                namespace=RAY_NAMESPACE,
                max_restarts=_ACTOR_RESTARTS,
                max_task_retries=0,
                max_concurrency=recipe.concurrency + _CONTROL_CALLS,
                num_cpus=0,
                scheduling_strategy="SPREAD",
            ).remote(recipe, worker_options, 1.0 / workers)
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            for made in actors:
                ray.kill(made, no_restart=True)
            msg = (
                f"the pipeline cannot be sent to Ray workers: it does not pickle "
                f"({type(exc).__name__}), as a ready Runnable holding its own client does not; "
                "give a factory taking the chat model (module:attr)"
            )
            raise ConfigurationError(msg) from None
        actors.append(actor)
    return actors


async def _close_all(ray: Any, actors: list[Any]) -> None:
    """Close every worker's session (bounded wait), then end the actors."""
    closing = [asyncio.wrap_future(a.close.remote().future()) for a in actors]
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*closing, return_exceptions=True), timeout=_CLOSE_TIMEOUT_S
        )
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)


async def _probe(actor: Any, delay: float) -> str:
    """Ask a worker that failed whether it is back (Ray queues the call while it restarts)."""
    await asyncio.sleep(delay)
    description: str = await actor.start.remote()
    return description


async def _drive(
    ray: Any,
    actors: list[Any],
    window: int,
    items: Iterable[Item],
    options: RunOptions,
) -> AsyncGenerator[Record, None]:
    """Send items to workers within their windows; yield each item's record once.

    A worker whose call failed with ``RayActorError`` gets no new item until a
    probe (its ``start``) answers: Ray restarts it meanwhile, and items sent to
    it then would fail too and count as losses.
    """
    errors = ray.exceptions
    stop, grace_s = options.stop, options.grace_s
    source = fresh_items(items, options.skip, options.limit)
    exhausted = False
    again: deque[Item] = deque()  # items whose worker died under them: sent first
    losses: dict[str, int] = {}
    load = [0] * len(actors)
    alive = [True] * len(actors)
    ready = [True] * len(actors)
    flights: dict[asyncio.Future[Any], _Flight] = {}
    # Completed calls, in completion order: one wake-up per record, not a wait over all.
    done: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def track(future: asyncio.Future[Any], flight: _Flight) -> None:
        flights[future] = flight
        future.add_done_callback(done.put_nowait)

    def next_item() -> Item | None:
        nonlocal exhausted
        if stop is not None and stop.is_set():
            return None
        if again:
            return again.popleft()
        item = next(source, None)
        exhausted = item is None
        return item

    def refill() -> None:
        while True:
            free = [n for n in range(len(actors)) if ready[n] and load[n] < window]
            if not free:
                return
            item = next_item()
            if item is None:
                return
            n = min(free, key=load.__getitem__)
            ref = actors[n].run.remote(item.id, item.line, item.input, item.error)
            track(asyncio.wrap_future(ref.future()), _Flight(n, item, ref))
            load[n] += 1

    def probe(n: int, delay: float = 0.0) -> None:
        ready[n] = False
        if not any(f.worker == n and f.item is None for f in flights.values()):
            track(asyncio.ensure_future(_probe(actors[n], delay)), _Flight(n))

    def busy() -> bool:
        if any(load):  # items in flight
            return True
        waiting = bool(again) or not exhausted
        return bool(flights) and waiting and not (stop is not None and stop.is_set())

    stopping: asyncio.Future[Any] | None = None
    if stop is not None:
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(done.put_nowait)
    try:
        refill()
        deadline: float | None = None
        while busy():
            if stop is not None and stop.is_set() and deadline is None:
                deadline = loop.time() + grace_s
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                async with asyncio.timeout(timeout):
                    finished = [await done.get()]
            except TimeoutError:
                break  # the grace is over: what is in flight leaves no record
            while not done.empty():
                finished.append(done.get_nowait())
            for future in finished:
                flight = flights.pop(future, None)
                if flight is None:  # the stop event
                    continue
                n, item = flight.worker, flight.item
                if item is not None:
                    load[n] -= 1
                try:
                    data = future.result()
                except errors.RayTaskError as exc:
                    if item is not None:  # the worker raised instead of answering
                        yield _failed(item, exc.cause)
                        continue
                    alive[n] = False  # restarted, but its session cannot be built
                    if not any(alive):
                        raise _start_error(exc.cause) from None
                    continue
                except (errors.RayActorError, errors.ObjectLostError) as exc:
                    if isinstance(exc, errors.ActorDiedError):
                        alive[n] = ready[n] = False  # past its restarts
                        if not any(alive):
                            msg = f"all {len(alive)} Ray workers died past their restarts"
                            raise WorkersLost(msg) from exc
                    else:
                        probe(n, delay=0.0 if item is not None else 0.5)
                    if item is None:
                        continue
                    losses[item.id] = losses.get(item.id, 0) + 1
                    if losses[item.id] >= MAX_WORKER_LOSSES:
                        yield _lost(item, exc, losses.pop(item.id))
                    else:
                        again.append(item)
                    continue
                if item is None:
                    ready[n] = alive[n]  # back after a restart
                    continue
                losses.pop(item.id, None)
                yield _record(data)
            refill()
    finally:
        if stopping is not None and not stopping.done():
            stopping.cancel()
        for future, flight in flights.items():
            future.cancel()
            if flight.ref is not None:
                with contextlib.suppress(Exception):
                    ray.cancel(flight.ref)
