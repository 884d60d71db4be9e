"""``pipelines run --lane flex [--flex-wait SECONDS]``: the calls at OpenAI's flex tier.

The flags, their checks (exit 2 in one line), and the
:class:`~lc_async_pipelines.runner.limits.FlexOptions` they make; the call
path itself is :mod:`lc_async_pipelines.runner.limits.flex`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._args import seconds
from lc_async_pipelines.cli._checks import fail_usage

if TYPE_CHECKING:
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.runner.limits import FlexOptions
    from lc_async_pipelines.runner.retry import RetryPolicy

__all__ = [
    "DEFAULT_FLEX_WAIT_S",
    "add_lane_flags",
    "check_lane_flags",
    "check_lane_model",
    "flex_options",
]

DEFAULT_FLEX_WAIT_S = 600.0
# OpenAI's examples raise a flex request's timeout to 15 minutes
# (https://platform.openai.com/docs/guides/flex-processing).
_FLEX_TIMEOUT_S = 900.0


def add_lane_flags(group: Any) -> None:
    """--lane and --flex-wait, in the "Batch API and costs" group."""
    group.add_argument(
        "--lane",
        choices=("standard", "flex"),
        default="standard",
        help="flex: OpenAI's flex tier (service_tier=flex, Batch API prices, slower, may be "
        "refused with a 429): refusals are retried, then sent standard (default standard)",
    )
    group.add_argument(
        "--flex-wait",
        type=seconds,
        metavar="SECONDS",
        help="--lane flex: how long an item keeps trying flex before its calls go at the "
        f"standard tier, seconds (default {DEFAULT_FLEX_WAIT_S:.0f})",
    )


def check_lane_flags(args: argparse.Namespace) -> None:
    """--lane flex goes with neither --batch-api nor --engine ray; --flex-wait needs it."""
    if args.lane != "flex":
        lanes = getattr(args, "lanes", None) or ()  # --lanes ...,flex,...: its flex lane
        if args.flex_wait is not None and "flex" not in lanes:
            fail_usage("--flex-wait goes with --lane flex (or --lanes with flex)")
        return
    if args.batch_api:
        fail_usage("--lane flex: the calls go at the flex tier or through the Batch API, not both")
    if args.engine == "ray":
        fail_usage("--lane flex: flex runs in this process for now; drop --engine ray")


def check_lane_model(args: argparse.Namespace, settings: ModelSettings) -> None:
    """--lane flex needs an OpenAI model (``ChatOpenAI``): no other provider has OpenAI's flex."""
    if args.lane != "flex":
        return
    if settings.uses_embedded:
        fail_usage("--lane flex: the embedded model has no flex tier; give an OpenAI model")
    if settings.provider not in (None, "openai"):
        fail_usage(
            f"--lane flex: {settings.model} is not an OpenAI model; flex is OpenAI's "
            "service_tier (give -m openai:MODEL or drop --lane flex)"
        )


def flex_options(
    args: argparse.Namespace, settings: ModelSettings, retry: RetryPolicy
) -> FlexOptions | None:
    """The run's :class:`FlexOptions` (None without --lane flex): its wait, timeout and backoff."""
    if args.lane != "flex":
        return None
    from lc_async_pipelines.runner.limits import FlexOptions

    wait = DEFAULT_FLEX_WAIT_S if args.flex_wait is None else args.flex_wait
    return FlexOptions(
        wait_s=wait,
        timeout_s=max(_FLEX_TIMEOUT_S, settings.timeout),
        initial=retry.initial,
        max_wait=retry.max_wait,
        jitter=retry.jitter,
    )
