"""The batch runner: items in, one record per item out, concurrently and with per-item retries."""

from lc_async_pipelines.runner._errors import is_transient, retry_after
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
from lc_async_pipelines.runner.inputs import (
    Item,
    ItemReader,
    count_items,
    item_id_for,
    read_items,
)
from lc_async_pipelines.runner.records import prepare_resume

__all__ = [
    "BudgetRateLimiter",
    "BudgetedChatModel",
    "Item",
    "ItemReader",
    "RateBudget",
    "Record",
    "RetryPolicy",
    "RunOptions",
    "RunSummary",
    "SQLiteCache",
    "count_items",
    "is_transient",
    "item_id_for",
    "prepare_resume",
    "read_items",
    "retry_after",
    "run_items",
    "with_budget",
    "with_cache",
    "write_records",
]
