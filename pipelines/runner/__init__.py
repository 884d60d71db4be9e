"""The batch runner: items in, one record per item out, concurrently and with per-item retries.

The core: :func:`run_items` (:mod:`~lc_async_pipelines.runner.loop`) runs a
chain over :class:`Item` s read by :func:`read_items`
(:mod:`~lc_async_pipelines.runner.inputs`), as :class:`RunOptions` say, with
the :class:`RetryPolicy` of :mod:`~lc_async_pipelines.runner.retry`; each
:class:`Record` is written by :func:`write_records` and counted in a
:class:`RunSummary`; :mod:`~lc_async_pipelines.runner.records` keeps the
records file, its manifest, lock and resume.

Above the core, one subpackage per idea:
:mod:`~lc_async_pipelines.runner.limits` (rate budgets, in memory or Redis),
:mod:`~lc_async_pipelines.runner.caches` (SQLite and Redis LLM caches),
:mod:`~lc_async_pipelines.runner.batch` (the provider's Batch API) and
:mod:`~lc_async_pipelines.runner.costs` (prices, the meter, dry-run
estimates). The Ray engine is :mod:`lc_async_pipelines.engines`.

Names are imported on first use (PEP 562): ``from lc_async_pipelines.runner
import Record`` loads neither the OpenAI SDK, nor Redis, nor Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lc_async_pipelines.runner.batch import BatchOptions, BatchSession
    from lc_async_pipelines.runner.caches import (
        RedisCache,
        SQLiteCache,
        open_cache,
        with_cache,
    )
    from lc_async_pipelines.runner.costs import CostMeter, PriceTable, estimate_run, load_prices
    from lc_async_pipelines.runner.inputs import (
        Item,
        ItemReader,
        count_items,
        item_id_for,
        read_items,
    )
    from lc_async_pipelines.runner.limits import (
        BudgetedChatModel,
        BudgetRateLimiter,
        FlexOptions,
        RateBudget,
        RedisRateBudget,
        budget_key,
        open_budget,
        with_budget,
    )
    from lc_async_pipelines.runner.loop import run_items
    from lc_async_pipelines.runner.options import RunOptions
    from lc_async_pipelines.runner.record import Record
    from lc_async_pipelines.runner.records import batches_path, prepare_resume
    from lc_async_pipelines.runner.retry import RetryPolicy, is_transient, retry_after
    from lc_async_pipelines.runner.summary import RunSummary
    from lc_async_pipelines.runner.writer import write_records

_WHERE = {
    "BatchOptions": "batch",
    "BatchSession": "batch",
    "RedisCache": "caches",
    "SQLiteCache": "caches",
    "open_cache": "caches",
    "with_cache": "caches",
    "CostMeter": "costs",
    "PriceTable": "costs",
    "estimate_run": "costs",
    "load_prices": "costs",
    "Item": "inputs",
    "ItemReader": "inputs",
    "count_items": "inputs",
    "item_id_for": "inputs",
    "read_items": "inputs",
    "BudgetRateLimiter": "limits",
    "BudgetedChatModel": "limits",
    "FlexOptions": "limits",
    "RateBudget": "limits",
    "RedisRateBudget": "limits",
    "budget_key": "limits",
    "open_budget": "limits",
    "with_budget": "limits",
    "run_items": "loop",
    "RunOptions": "options",
    "Record": "record",
    "batches_path": "records",
    "prepare_resume": "records",
    "RetryPolicy": "retry",
    "is_transient": "retry",
    "retry_after": "retry",
    "RunSummary": "summary",
    "write_records": "writer",
}

__all__ = [
    "BatchOptions",
    "BatchSession",
    "BudgetRateLimiter",
    "BudgetedChatModel",
    "CostMeter",
    "FlexOptions",
    "Item",
    "ItemReader",
    "PriceTable",
    "RateBudget",
    "Record",
    "RedisCache",
    "RedisRateBudget",
    "RetryPolicy",
    "RunOptions",
    "RunSummary",
    "SQLiteCache",
    "batches_path",
    "budget_key",
    "count_items",
    "estimate_run",
    "is_transient",
    "item_id_for",
    "load_prices",
    "open_budget",
    "open_cache",
    "prepare_resume",
    "read_items",
    "retry_after",
    "run_items",
    "with_budget",
    "with_cache",
    "write_records",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'lc_async_pipelines.runner' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"lc_async_pipelines.runner.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
