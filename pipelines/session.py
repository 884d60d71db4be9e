"""One place that wires a run's model: client, budget, cache and fallback.

The command line, the service and the notebooks all get their model here::

    async with model_session(budget=RateBudget(rpm=500), cache="out/cache.sqlite") as session:
        chain = build_summary_chain(session.llm)      # hand session.llm to any factory
        print(session.description, session.budget.requests_sent)

Order of the layers, from the chain's side: the fallback (another model on the
same endpoint, tried when a call to the main one fails), then the budget (RPM,
TPM, calls in flight, in the chat model's ``rate_limiter`` slot), then the LLM
cache, which langchain-core consults before the rate limiter, so a cache hit
spends no budget (``BaseChatModel._agenerate_with_cache``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel

from lc_async_pipelines import telemetry
from lc_async_pipelines.models import ModelSettings, chat_model_session, describe
from lc_async_pipelines.runner.caches import RedisCache, SQLiteCache, open_cache, with_cache
from lc_async_pipelines.runner.limits import BudgetedChatModel, RateBudget, with_budget
from lc_async_pipelines.runner.retry import RetryPolicy

if TYPE_CHECKING:
    from lc_async_pipelines.runner.batch import BatchOptions, BatchSession
    from lc_async_pipelines.runner.limits import FlexOptions

__all__ = ["ModelSession", "model_session"]


@dataclass(frozen=True)
class ModelSession:
    """A wired model, ready for the pipeline factories.

    Attributes:
        llm: what to hand to a factory: a LangChain chat model
            (:class:`~lc_async_pipelines.runner.BudgetedChatModel`, a
            ``BaseChatModel``) behind the budget, the cache and the fallback,
            with per-call retries; it streams through ``astream``.
        chat_model: the bare client (no budget, cache or fallback).
        budget: the budget every call through ``llm`` draws from.
        cache: the LLM cache, or None.
        settings: the settings the model was built from (model name resolved).
        description: one line naming model, endpoint and key source; no secret.
        batch: the Batch API session the calls go through, or None.
    """

    llm: BudgetedChatModel
    chat_model: BaseChatModel
    budget: RateBudget
    cache: BaseCache | None
    settings: ModelSettings
    description: str
    batch: BatchSession | None = None


def _defaults(
    settings: ModelSettings | None, budget: RateBudget | None
) -> tuple[ModelSettings, RateBudget]:
    """The settings and budget a session uses; telemetry on if the environment asks."""
    telemetry.enable_from_environment()  # OTEL_EXPORTER_OTLP_*, or the app's own provider
    return settings or ModelSettings.from_env(), budget if budget is not None else RateBudget()


@asynccontextmanager
async def model_session(
    settings: ModelSettings | None = None,
    *,
    budget: RateBudget | None = None,
    cache: BaseCache | str | Path | None = None,
    cache_ttl_s: float | None = None,
    fallback_model: str | None = None,
    parallel: int = 4,
    retry: RetryPolicy | None = None,
    batch: BatchOptions | None = None,
    flex: FlexOptions | None = None,
) -> AsyncIterator[ModelSession]:
    """Yield a :class:`ModelSession`: the model for ``settings``, wired.

    Args:
        settings: where and how to call (default ``ModelSettings.from_env()``).
        budget: shared limits (default: a :class:`RateBudget` with no limit,
            which still counts requests); a
            :class:`~lc_async_pipelines.runner.RedisRateBudget` is connected
            here, before the model starts, and its owner closes it
            (``async with budget``).
        cache: a LangChain ``BaseCache``; or a path for an :class:`SQLiteCache`,
            or a ``redis://`` URL for a :class:`~lc_async_pipelines.runner.RedisCache`
            shared by processes (opened here and closed on exit).
        cache_ttl_s: seconds an entry of a Redis cache opened here lives (None: for ever).
        fallback_model: another model name on the same endpoint, tried when a
            request to the main model fails (each failure in the item's
            history, a 429 still pausing the budget, each request charged).
        parallel: slots of the embedded server, when it is started here.
        retry: retries of each model call on its own, inside its item (None:
            a call fails at its first error and the caller retries, as the
            service does before a stream's first token).
        batch: send every call through the provider's Batch API
            (:class:`~lc_async_pipelines.runner.batch.BatchSession`: OpenAI
            ``/v1/batches`` for a ``ChatOpenAI``, Anthropic's Message Batches for
            a ``ChatAnthropic``): calls are collected per stage, submitted, polled,
            and each result handed back to its caller; cache hits never enter a batch.
        flex: send every call at OpenAI's flex tier, and at the standard tier
            once its item has been refused past ``flex.wait_s``
            (:class:`~lc_async_pipelines.runner.limits.FlexOptions`); the
            standard-tier model of the same session is ``session.llm.with_flex(None)``.

    Raises:
        ConfigurationError: the model cannot be resolved or built.
        EmbeddedModelError: the embedded server cannot start.
        BudgetUnavailable: the shared budget's Redis cannot be reached.
        CacheUnavailable: a Redis cache cannot be reached.

    Telemetry: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, or a global
    OpenTelemetry ``TracerProvider`` set by the app, the calls through
    ``llm`` and the runs of :func:`~lc_async_pipelines.runner.run_items` are
    traced (:func:`~lc_async_pipelines.telemetry.enable_from_environment`).
    """
    settings, budget = _defaults(settings, budget)
    await budget.connect()  # a shared budget's Redis unreachable: fail before any model starts
    owned = open_cache(cache, ttl_s=cache_ttl_s) if isinstance(cache, str | Path) else None
    # Not `owned or cache`: an empty SQLiteCache has len 0 and is falsy.
    the_cache: BaseCache | None = owned if owned is not None else cache  # type: ignore[assignment]
    try:
        if isinstance(the_cache, RedisCache):  # unreachable: fail before any model starts
            await the_cache.connect()
        async with (
            chat_model_session(settings, parallel=parallel) as chat_model,
            contextlib.AsyncExitStack() as stack,
        ):
            batch_session = None
            if batch is not None:
                from lc_async_pipelines.runner.batch import BatchSession

                batch_session = await stack.enter_async_context(BatchSession(chat_model, batch))
            model: Any = batch_session.chat_model if batch_session is not None else chat_model
            if the_cache is not None:
                model = with_cache(model, the_cache)
            fallbacks = []
            if fallback_model:
                name_field = "model_name" if hasattr(model, "model_name") else "model"
                fallbacks.append(model.model_copy(update={name_field: fallback_model}))
            base_url = getattr(chat_model, "openai_api_base", None)
            resolved = settings.model_copy(
                update={"model": getattr(chat_model, "model_name", settings.model)}
            )
            llm = with_budget(model, budget, retry=retry, fallbacks=fallbacks, flex=flex)
            try:
                yield ModelSession(
                    llm=llm,
                    chat_model=chat_model,
                    budget=budget,
                    cache=the_cache,
                    settings=resolved,
                    description=describe(resolved, base_url),
                    batch=batch_session,
                )
            finally:
                llm.close()  # a call after the block: a clear error, not a closed client's
    finally:
        if isinstance(owned, RedisCache):
            await owned.aclose()
        elif isinstance(owned, SQLiteCache):
            owned.close()
