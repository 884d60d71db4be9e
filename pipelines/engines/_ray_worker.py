"""One Ray worker (an actor) and what crosses back from it: records as dicts, errors by class."""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

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
)
from lc_async_pipelines.runner.caches import RedisCache, open_cache
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.limits import open_budget
from lc_async_pipelines.runner.loop import run_items
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record
from lc_async_pipelines.session import model_session

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable, RunnableConfig

    from lc_async_pipelines.engines.recipe import ChainRecipe

__all__ = ["Worker", "failed_record", "lost_record", "record_from_dict", "start_error"]

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


class Worker:
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


def record_from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record shipped as ``Record.to_dict()``; the exception for our own classes."""
    record = Record(**data)
    error = record.error
    if error is not None and error.get("type") in _OWN_ERRORS:
        record.exception = _OWN_ERRORS[error["type"]](error.get("message", ""))
    return record


def lost_record(item: Item, exc: BaseException, attempts: int) -> Record:
    """The error record of an item whose workers died under it ``attempts`` times."""
    message = f"{attempts} workers died while running this item; last: {error_text(exc)}"
    return Record(
        id=item.id,
        line=item.line,
        input=item.input,
        error={"type": type(exc).__name__, "message": message[:2000]},
    )


def failed_record(item: Item, exc: BaseException) -> Record:
    """The error record of an item whose worker raised instead of answering (start failed)."""
    record = Record(
        id=item.id,
        line=item.line,
        input=item.input,
        error={"type": type(exc).__name__, "message": error_text(exc)},
    )
    record.exception = exc if isinstance(exc, PipelinesError) else None
    return record


def start_error(cause: BaseException) -> PipelinesError:
    """The error a run raises when a worker cannot build its model session."""
    if isinstance(cause, PipelinesError):
        return cause
    msg = f"a Ray worker could not start: {type(cause).__name__}: {error_text(cause)}"
    return ConfigurationError(msg)
