"""Limits on a run's model calls: a rate budget in memory or shared through Redis.

:class:`RateBudget` (requests and tokens per minute, calls in flight, a pause
after a 429) meters its rates through a :class:`BudgetStore`: in this process
(:class:`MemoryBudgetStore`, leaky buckets) or in Redis
(:class:`RedisBudgetStore`, behind :class:`RedisRateBudget`).
:func:`with_budget` puts a chat model behind a budget (with ``flex=``
:class:`FlexOptions`, its calls go at OpenAI's flex tier, :func:`flex_call`);
:func:`open_budget` picks the budget a ``--budget`` value names.
"""

from lc_async_pipelines.runner.limits.budget import BudgetRateLimiter, RateBudget
from lc_async_pipelines.runner.limits.chat_model import BudgetedChatModel, with_budget
from lc_async_pipelines.runner.limits.flex import FlexOptions, flex_call
from lc_async_pipelines.runner.limits.redis_budget import (
    RedisBudgetStore,
    RedisRateBudget,
    SharedUse,
    budget_key,
    open_budget,
)
from lc_async_pipelines.runner.limits.store import BudgetRates, BudgetStore, MemoryBudgetStore

__all__ = [
    "BudgetRateLimiter",
    "BudgetRates",
    "BudgetStore",
    "BudgetedChatModel",
    "FlexOptions",
    "MemoryBudgetStore",
    "RateBudget",
    "RedisBudgetStore",
    "RedisRateBudget",
    "SharedUse",
    "budget_key",
    "flex_call",
    "open_budget",
    "with_budget",
]
