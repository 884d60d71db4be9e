"""The rate budget and the Redis a run shares with others (--budget, --cache)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_shared_services_reachable",
    "open_rate_budget",
    "share_note",
    "watch_shared_budget",
]

log = logging.getLogger(__name__)

# How often a run checks in on its shared budget and rereads who else draws from it.
_CHECK_IN_S = 5.0


def open_rate_budget(args: argparse.Namespace, settings: Any, max_in_flight: int) -> Any:
    """The run's budget: in memory, or shared through the Redis of --budget.

    The default key covers the endpoint, the model and --rpm/--tpm: runs at
    other limits get a budget of their own (docs/scale-out.md).
    """
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


def _limits_text(rpm: float | None, tpm: float | None) -> str:
    parts = [f"--rpm {rpm:g}" if rpm else "", f"--tpm {tpm:g}" if tpm else ""]
    return " ".join(p for p in parts if p) or "no limit"


def share_note(use: Any, rpm: float | None, tpm: float | None) -> str | None:
    """Why a run sharing a budget goes slower than its own limits, for the progress line.

    Args:
        use: the budget's :class:`~lc_async_pipelines.runner.limits.SharedUse`.
        rpm: this run's --rpm (None: unlimited).
        tpm: this run's --tpm (None: unlimited).

    Returns:
        ``shared budget: 3 runs, ~200 rpm each``, or ``shared budget: held
        by a run at --rpm 60`` when a run at lower limits draws from it too
        (short: it shares the progress line with the counts); None when this run is alone on it,
        has no limit to share, or only faster runs share it.
    """
    if use.limits:  # runs at other limits: only a slower one holds this one back
        slower = [(r, t) for r, t in use.limits if _below(r, rpm) or _below(t, tpm)]
        others = "; ".join(_limits_text(r, t) for r, t in slower)
        return f"shared budget: held by a run at {others}" if slower else None
    if use.runs <= 1 or not (rpm or tpm):
        return None
    each = " and ".join(
        f"~{limit / use.runs:,.0f} {unit}" for limit, unit in ((rpm, "rpm"), (tpm, "tpm")) if limit
    )
    return f"shared budget: {use.runs} runs, {each} each"


def _below(other: float | None, own: float | None) -> bool:
    """True when a limit ``other`` is tighter than ``own`` (None: unlimited)."""
    return other is not None and (own is None or other < own)


async def watch_shared_budget(
    budget: Any, args: argparse.Namespace, show: Callable[[str | None], None]
) -> None:
    """Check in on a Redis budget every 5 s; ``show`` the :func:`share_note` when it changes.

    Runs until cancelled. Runs at other limits on the same key (possible only
    with --budget-key) are also said once on stderr, as a warning. A Redis
    that does not answer skips a check-in: the budget itself waits out outages.
    """
    import asyncio

    from lc_async_pipelines.runner import RedisRateBudget

    if not isinstance(budget, RedisRateBudget):
        return
    shown: str | None = None
    warned = False
    while True:
        try:
            use = await budget.shared_use()
        except Exception as exc:  # presence is for people; the schedule goes on without it
            log.debug("shared budget check-in skipped: %s", type(exc).__name__)
        else:
            note = share_note(use, args.rpm, args.tpm)
            if use.limits and not warned:
                warned = True
                others = "; ".join(_limits_text(r, t) for r, t in use.limits)
                print(
                    f"pipelines: warning: budget {budget.key} is also used by runs at {others} "
                    f"(this one: {_limits_text(args.rpm, args.tpm)}); each books calls at its "
                    "own pace on one schedule, so the slowest holds the others near its rate: "
                    "give every run on a key the same --rpm/--tpm",
                    file=sys.stderr,
                )
            if note != shown:
                shown = note
                show(note)
        await asyncio.sleep(_CHECK_IN_S)


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
