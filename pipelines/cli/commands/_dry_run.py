"""``pipelines run --dry-run``: every prompt rendered on a stand-in model; no model is called."""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import TYPE_CHECKING

from lc_async_pipelines.cli._checks import check_paths
from lc_async_pipelines.cli.commands._run_plan import (
    check_batch_model,
    check_engine_and_cost_flags,
    check_first_rows,
    input_token_cap,
    load_price_table,
    pipeline_from_args,
    read_run_items,
)
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from lc_async_pipelines.models import ModelSettings

__all__ = ["print_dry_run_estimate"]


def print_dry_run_estimate(args: argparse.Namespace) -> ExitCode:
    """Print the run's estimated tokens, cost and wall time (stderr, and JSON on stdout)."""
    check_paths(args)
    check_engine_and_cost_flags(args)
    spec, options = pipeline_from_args(args)
    import asyncio
    import json

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.runner.costs import estimate_run
    from lc_async_pipelines.runner.records import done_ids, records_path

    settings = _named_model(
        ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    )
    check_batch_model(args, settings)
    prices = load_price_table(args, settings)
    reader, required = read_run_items(args, spec, options)
    head = [item for _, item in zip(range(5), reader, strict=False)]
    check_first_rows(head, args, required)  # as the run would: exit 2, not an estimate of errors
    items = itertools.chain(head, reader)
    estimate = asyncio.run(
        estimate_run(
            lambda llm: spec.build(llm, **options),
            items,
            model=_priced_model_name(settings),
            prices=prices,
            batch=args.batch_api,
            flex=args.lane == "flex",
            max_tokens=settings.max_tokens or 512,
            rpm=args.rpm,
            tpm=args.tpm,
            limit=args.limit,
            skip=frozenset(done_ids(records_path(args.output))),
            max_input_tokens=input_token_cap(args, spec, settings),
            prompt_tokens=spec.prompt_tokens,
        )
    )
    print(estimate.describe(), file=sys.stderr)
    print(json.dumps({"estimate": estimate.to_dict()}))
    return ExitCode.OK


def _named_model(settings: ModelSettings) -> ModelSettings:
    """The settings to estimate with: a model named with -m even when no key is set.

    A dry run sends nothing, so it needs no key; without this, ``-m
    gpt-4o-mini --dry-run`` with no ``OPENAI_API_KEY`` would price the
    embedded model (the model a run would then use) at $0. A note says so.
    """
    from pydantic import SecretStr

    from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME

    named = settings.model_name
    if not settings.uses_embedded or settings.embedded or named in (None, EMBEDDED_MODEL_NAME):
        return settings
    print(
        f"pipelines: note: no OPENAI_API_KEY or OPENAI_BASE_URL is set, so a run would use "
        f"the embedded model; this estimate prices {named}",
        file=sys.stderr,
    )
    return settings.model_copy(update={"api_key": SecretStr("(none: a dry run sends nothing)")})


def _priced_model_name(settings: ModelSettings) -> str:
    """The model name the price table is read for."""
    from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME
    from lc_async_pipelines.models import DEFAULT_OPENAI_MODEL

    if settings.uses_embedded:
        return EMBEDDED_MODEL_NAME
    return settings.model_name or (
        DEFAULT_OPENAI_MODEL if not settings.base_url else "(unnamed: give -m to price it)"
    )
