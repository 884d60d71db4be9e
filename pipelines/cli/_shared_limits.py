"""The rate budget and the Redis a run shares with others (--budget, --cache)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["check_shared_services_reachable", "open_rate_budget"]


def open_rate_budget(args: argparse.Namespace, settings: Any, max_in_flight: int) -> Any:
    """The run's budget: in memory, or shared through the Redis of --budget."""
    from lc_async_pipelines.runner import open_budget

    return open_budget(
        args.budget,
        key=args.budget_key,
        base_url=settings.base_url,
        model=settings.model,
        rpm=args.rpm,
        tpm=args.tpm,
        max_in_flight=max_in_flight,
        tpm_charge=settings.tpm_charge,
    )


def check_shared_services_reachable(args: argparse.Namespace, settings: Any) -> None:
    """A Redis of --budget or --cache not answering: exit 2 before the output is touched.

    BudgetUnavailable or CacheUnavailable; a mistyped cache URL would
    otherwise send every call to the model with only a warning.
    """
    cache = getattr(args, "cache", None)
    shared_cache = isinstance(cache, str) and "://" in cache
    if args.budget is None and not shared_cache:
        return
    import asyncio

    from lc_async_pipelines.runner.caches import RedisCache, open_cache

    async def reach() -> None:
        if args.budget is not None:
            async with open_rate_budget(args, settings, 1):
                pass
        opened = open_cache(cache, ttl_s=args.cache_ttl) if shared_cache else None
        if isinstance(opened, RedisCache):
            await opened.connect()
            await opened.aclose()

    asyncio.run(reach())
