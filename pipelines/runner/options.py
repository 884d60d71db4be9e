"""How :func:`~lc_async_pipelines.runner.run_items` runs: :class:`RunOptions`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.metering import RunCosts
from lc_async_pipelines.runner.retry import RetryPolicy

__all__ = ["RunOptions", "check_number"]


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_items` runs: window, retries, limits, stop.

    Attributes:
        concurrency: items in flight at once (None: ``config["max_concurrency"]``, else 4).
        retry: per-item retry policy.
        limit: run at most this many distinct items (skipped ones included).
        skip: ids already done (from :func:`prepare_resume`); not run again.
        stop: when set, no new item starts; items in flight get ``grace_s``
            seconds to finish, then are cancelled and leave no record (a
            resumed run does them).
        grace_s: seconds items in flight get to finish once ``stop`` is set.
        item_timeout_s: deadline of an item, all attempts and backoff included,
            seconds; past it the item is a ``DeadlineExceeded`` error record.
        max_input_tokens: an item whose input is estimated larger (3.5
            characters a token), with ``prompt_tokens``, is a ``RowError``
            record and is not sent.
        prompt_tokens: estimated tokens every call of an item carries besides
            its input (a prompt template's own text), counted toward
            ``max_input_tokens``.
        costs: prices every record's calls and holds the run's cost cap
            (:class:`~lc_async_pipelines.runner.metering.RunCosts`, such as
            :class:`~lc_async_pipelines.runner.costs.CostMeter`): once the
            money spent plus the estimate of the items in flight would pass
            the cap, no item starts
            (``costs.capped``), and the run ends when those in flight are done.
        trace_attributes: attributes of the run's span when telemetry is on
            (:mod:`lc_async_pipelines.telemetry`): what the caller knows of the
            run, such as ``pipelines.pipeline``, ``pipelines.fingerprint``,
            ``gen_ai.request.model`` and ``pipelines.input`` (OpenTelemetry
            attribute values: str, bool, int, float or a list of one of them).

    Raises:
        ConfigurationError: a value out of range (the message names it).
    """

    concurrency: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limit: int | None = None
    skip: frozenset[str] = frozenset()
    stop: asyncio.Event | None = None
    grace_s: float = 30.0
    item_timeout_s: float | None = None
    max_input_tokens: int | None = None
    prompt_tokens: int = 0
    costs: RunCosts | None = None
    trace_attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_number("concurrency", self.concurrency, minimum=1, whole=True)
        check_number("limit", self.limit, minimum=0, whole=True)
        check_number("grace_s", self.grace_s, minimum=0)
        check_number("item_timeout_s", self.item_timeout_s, minimum=0, strict=True)
        check_number("max_input_tokens", self.max_input_tokens, minimum=1, whole=True)
        check_number("prompt_tokens", self.prompt_tokens, minimum=0, whole=True)
