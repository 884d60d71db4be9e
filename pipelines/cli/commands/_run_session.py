"""The model session of a ``pipelines run`` in this process, from its flags."""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lc_async_pipelines.cli.commands._run_plan import RunPlan
    from lc_async_pipelines.runner import RunOptions
    from lc_async_pipelines.session import ModelSession


async def open_run_session(
    args: argparse.Namespace,
    plan: RunPlan,
    stack: AsyncExitStack,
    budget: Any,
    options: RunOptions,
    **extra: Any,
) -> ModelSession:
    """Open ``model_session`` with the run's settings, budget, cache, fallback and retries.

    ``extra`` goes to ``model_session`` as is (``batch=``, ``flex=``). The
    session is closed by ``stack``.
    """
    from lc_async_pipelines.session import model_session

    session: ModelSession = await stack.enter_async_context(
        model_session(
            plan.settings,
            budget=budget,
            cache=args.cache,
            cache_ttl_s=args.cache_ttl,
            fallback_model=args.fallback_model,
            parallel=args.concurrency,
            retry=options.retry,
            **extra,
        )
    )
    return session
