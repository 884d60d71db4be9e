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
import pickle
import signal
import threading
import uuid
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.engines._ray_driver import MAX_WORKER_LOSSES, drive
from lc_async_pipelines.engines._ray_reaper import start_reaper
from lc_async_pipelines.engines._ray_worker import Worker, start_error
from lc_async_pipelines.engines.recipe import ChainRecipe
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record

__all__ = ["MAX_WORKER_LOSSES", "RAY_NAMESPACE", "ChainRecipe", "run_items_on_ray"]

RAY_NAMESPACE = "lc_async_pipelines"
"""Ray namespace of the worker actors, named ``worker-<run>-<n>`` (see ``ray.get_actor``)."""

# Restarts of each actor (its constructor runs again); past them it is dead and
# the run goes on with the others.
_ACTOR_RESTARTS = 8

# Calls beyond the item window: start, pid, close.
_CONTROL_CALLS = 4
_CLOSE_TIMEOUT_S = 15.0

# One llama-server for all local workers: its slots (each 4,096 tokens of context).
_EMBEDDED_SLOTS = 8


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


async def _started_all(ray: Any, actors: list[Any]) -> None:
    """Build every worker's session; one that cannot start fails the run, as the CLI would."""
    try:
        await asyncio.gather(*(a.start.remote() for a in actors))
    except ray.exceptions.RayTaskError as exc:
        raise start_error(exc.cause) from None
    except ray.exceptions.RayActorError as exc:  # its constructor failed: an import, a pickle
        first = error_text(exc).strip().splitlines()[-1:] or ["no detail"]
        msg = f"a Ray worker could not be created: {first[0][:500]}"
        raise ConfigurationError(msg) from None


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
    and is shut down at the end, and a watcher process ends whatever of it is
    left when the run ends, even by ``kill -9`` of this process
    (:mod:`~lc_async_pipelines.engines._ray_reaper`, ray-project/ray#52385);
    with an ``address`` (``"auto"``,
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
            if address is None and (reaper := start_reaper()) is not None:
                stack.callback(reaper.stop)  # after ray.shutdown: the agents it leaves
            with _signals_kept():
                ray.init(**_init_kwargs(address))
            stack.callback(ray.shutdown)
        actors = _spawn(ray, recipe, options, workers)
        stack.push_async_callback(_close_all, ray, actors)
        await _started_all(ray, actors)
        async for record in drive(ray, actors, recipe.concurrency, items, options):
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

    embedded = EmbeddedModelServer(parallel=_EMBEDDED_SLOTS, threads=settings.embedded_threads)
    server = await stack.enter_async_context(embedded)
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
    remote = ray.remote(Worker)
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
