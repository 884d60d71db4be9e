"""The batch runner: items in, one record per item out, concurrently and with per-item retries."""

from lc_async_pipelines.runner._errors import is_transient, retry_after
from lc_async_pipelines.runner._ray import ChainRecipe, run_items_on_ray
from lc_async_pipelines.runner.batch_api import BatchOptions, BatchSession, batches_path
from lc_async_pipelines.runner.budget import (
    BudgetedChatModel,
    BudgetRateLimiter,
    RateBudget,
    with_budget,
)
from lc_async_pipelines.runner.cache import SQLiteCache, with_cache
from lc_async_pipelines.runner.core import (
    Record,
    RetryPolicy,
    RunOptions,
    RunSummary,
    run_items,
    write_records,
)
from lc_async_pipelines.runner.costs import CostMeter, PriceTable, estimate_run, load_prices
from lc_async_pipelines.runner.inputs import (
    Item,
    ItemReader,
    count_items,
    item_id_for,
    read_items,
)
from lc_async_pipelines.runner.records import prepare_resume
from lc_async_pipelines.runner.redis import (
    RedisCache,
    RedisRateBudget,
    budget_key,
    open_budget,
    open_cache,
)

__all__ = [
    "BatchOptions",
    "BatchSession",
    "BudgetRateLimiter",
    "BudgetedChatModel",
    "ChainRecipe",
    "CostMeter",
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
    "run_items_on_ray",
    "with_budget",
    "with_cache",
    "write_records",
]
