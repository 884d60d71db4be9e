"""``pipelines run``, the run itself: the pipeline over the plan's items, records written.

On this process (a model session, the cost meter, the Batch API when asked)
or on Ray workers (``--engine ray``, this process the only writer). The exit
code comes last: stopped by a signal, stopped at --max-cost, items failed, or
all done (:mod:`lc_async_pipelines.cli.exit_codes`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._shared_limits import open_rate_budget, watch_shared_budget
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines.cli._signals import StopSignals
    from lc_async_pipelines.cli.commands._run_plan import RunPlan
    from lc_async_pipelines.runner import Record, RetryPolicy, RunOptions, RunSummary
    from lc_async_pipelines.runner.batch import BatchOptions
    from lc_async_pipelines.runner.costs import CostMeter
    from lc_async_pipelines.runner.lanes import LaneRun, SharedCap

__all__ = ["write_run_records"]


@dataclass
class _StartedRun:
    """The records as they come, where they are made, and what counts them."""

    records: AsyncIterator[Record]
    where: str
    cache: Any = None
    meter: CostMeter | SharedCap | None = None
    batch_session: Any = None
    lanes: LaneRun | None = None


async def write_run_records(args: argparse.Namespace, plan: RunPlan) -> ExitCode:
    """Run the plan's pipeline over its items, write the records and the summary."""
    import asyncio

    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines.cli._display import in_flight_text
    from lc_async_pipelines.cli._heap import settle_heap
    from lc_async_pipelines.cli._signals import stop_loop_on_signals
    from lc_async_pipelines.runner import RetryPolicy, RunOptions

    _report_resume(args, plan)
    in_flight = in_flight_text(args.stream)  # on a terminal: tokens as they arrive
    callbacks = [in_flight.handler] if in_flight is not None and in_flight.handler else []
    config = RunnableConfig(max_concurrency=args.concurrency, callbacks=callbacks)  # type: ignore[typeddict-item]
    stop = asyncio.Event()
    signals = stop_loop_on_signals(stop, grace_s=args.grace)
    budget = open_rate_budget(args, plan.settings, args.max_in_flight or args.concurrency)
    batch = None
    if args.batch_api:
        batch, budget, config = _batch_api_setup(args, plan, callbacks)
    retry = RetryPolicy(max_retries=args.max_retries)
    options = RunOptions(
        concurrency=args.concurrency,
        retry=retry,
        limit=args.limit,
        skip=frozenset(plan.done),
        stop=stop,
        grace_s=args.grace,
        item_timeout_s=args.item_timeout,
        max_input_tokens=plan.max_input_tokens,
        prompt_tokens=plan.spec.prompt_tokens,
        trace_attributes=plan.run.manifest.trace_attributes(),
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(budget)  # Redis unreachable: exit 2 before any model
        started = await _start(args, plan, stack, budget, options, config, batch)
        settle_heap()  # the model stack is imported and built: what is left is per item
        print(f"pipelines: {plan.spec.name} on {started.where}", file=sys.stderr)
        try:
            summary = await _write_shown(args, plan, started, budget, in_flight)
        except asyncio.CancelledError:  # a second signal: stop now
            return signals.exit_code or ExitCode.INTERRUPTED
        extra = _summary_extra(args, plan, budget, started)
    code = _exit_code(args, signals, started.meter, summary)
    _print_totals(args, plan, summary, extra, code)
    _report_table(plan)
    return code


async def _write_shown(
    args: argparse.Namespace, plan: RunPlan, started: _StartedRun, budget: Any, in_flight: Any
) -> RunSummary:
    """Write the records under the run's display; a shared budget's other runs on its line."""
    import asyncio

    from lc_async_pipelines.cli._display import run_display
    from lc_async_pipelines.runner import write_records

    tagged = args.concurrency > 1
    with run_display(plan.total, stream=args.stream, tagged=tagged, in_flight=in_flight) as display:
        # who else draws from a shared budget, checked every 5 s: why this run may go slower
        watch = asyncio.create_task(watch_shared_budget(budget, args, display.set_note))
        try:
            return await write_records(started.records, plan.run.out, on_record=display.show)
        finally:
            watch.cancel()


def _report_resume(args: argparse.Namespace, plan: RunPlan) -> None:
    """Say what happened to the records already in --output: moved, adopted or resumed."""
    run = plan.run
    if run.backup is not None:
        print(f"restart: the previous records were moved to {run.backup}", file=sys.stderr)
    if run.adopted:
        print(f"resuming records written without a manifest in {args.output}", file=sys.stderr)
    if plan.done:
        dropped = run.prior.dropped_failed + run.prior.dropped_partial
        again = f"; {dropped} failed or cut records run again" if dropped else ""
        print(
            f"resuming: {len(plan.done)} items already done in {args.output}{again}",
            file=sys.stderr,
        )


def _batch_api_setup(
    args: argparse.Namespace, plan: RunPlan, callbacks: list[Any]
) -> tuple[BatchOptions, Any, RunnableConfig]:
    """--batch-api: the batch options, an unlimited budget, and a config without a window."""
    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines.runner.batch import BatchLimits, BatchOptions, batches_path
    from lc_async_pipelines.runner.limits import RateBudget

    if args.rpm or args.tpm or args.max_in_flight or args.budget:
        print(
            "pipelines: warning: --rpm, --tpm, --max-in-flight and --budget do not apply "
            "to the Batch API (a call held back would miss its stage)",
            file=sys.stderr,
        )
    batch = BatchOptions(
        state_path=batches_path(plan.run.output),
        retry=args.batch_retry,
        window_s=args.batch_window,
        limits=BatchLimits(max_tokens=args.max_enqueued_tokens),
    )
    budget = RateBudget()  # unlimited: batches have no RPM or TPM
    # no max_concurrency: every chunk of a map-reduce joins the same stage
    config = RunnableConfig(callbacks=callbacks)
    return batch, budget, config


def _start_on_ray(
    args: argparse.Namespace, plan: RunPlan, budget: Any, options: RunOptions, retry: RetryPolicy
) -> _StartedRun:
    """--engine ray: the workers build their own sessions; this process only writes."""
    from lc_async_pipelines.engines import ChainRecipe, run_items_on_ray
    from lc_async_pipelines.models import describe

    recipe = ChainRecipe(
        plan.spec,
        plan.options,
        plan.settings,
        budget_url=args.budget,
        budget_key=args.budget_key or getattr(budget, "key", None),
        rpm=args.rpm,
        tpm=args.tpm,
        cache=args.cache,
        cache_ttl_s=args.cache_ttl,
        concurrency=args.concurrency,
        max_in_flight=args.max_in_flight,
        fallback_model=args.fallback_model,
        retry=retry,
    )
    workers = args.workers or 2
    where = f"{workers} Ray workers on {args.address or 'a local Ray'}; "
    where += describe(plan.settings, plan.settings.base_url)
    records = run_items_on_ray(recipe, plan.items, options, workers=workers, address=args.address)
    return _StartedRun(records, where)


async def _start_here(
    args: argparse.Namespace,
    plan: RunPlan,
    stack: AsyncExitStack,
    budget: Any,
    options: RunOptions,
    config: RunnableConfig,
    batch: BatchOptions | None,
) -> _StartedRun:
    """--engine local: a model session in this process (closed by ``stack``) and a cost meter."""
    import dataclasses

    from lc_async_pipelines.cli.commands._flex_lane import flex_options
    from lc_async_pipelines.cli.commands._run_session import open_run_session
    from lc_async_pipelines.runner import RetryPolicy, run_items
    from lc_async_pipelines.runner.costs import CostMeter, chain_max_tokens
    from lc_async_pipelines.runner.limits.chat_model import govern

    flex = flex_options(args, plan.settings, options.retry or RetryPolicy())
    session = await open_run_session(args, plan, stack, budget, options, batch=batch, flex=flex)
    chain = plan.spec.build(session.llm, **plan.options)
    if plan.spec.owns_model:  # its own chat models, put under the run's budget and retries
        chain = govern(chain, session.budget, retry=options.retry, flex=flex)
    meter = CostMeter(
        plan.prices,
        model=session.settings.model_name,
        batch=args.batch_api,
        flex=flex is not None,
        max_cost_usd=args.max_cost,
        prior_usd=plan.run.prior.cost_usd,
        output_tokens=chain_max_tokens(chain) or plan.settings.max_tokens or 512,
        # a self-hosted endpoint's models have no price to miss, unless prices were given
        warn_unpriced=plan.settings.known_provider or args.prices is not None,
    )
    options = dataclasses.replace(options, costs=meter)
    where = session.description
    if args.batch_api:
        where += ", through the Batch API"
    if flex is not None:
        where += f", at the flex tier (standard after {flex.wait_s:g} s refused)"
    if plan.spec.owns_model:
        where = "a ready Runnable with its own model, under the run's budget"
    records = run_items(chain, plan.items, options, config=config)
    return _StartedRun(records, where, session.cache, meter, session.batch)


async def _start(
    args: argparse.Namespace,
    plan: RunPlan,
    stack: AsyncExitStack,
    budget: Any,
    options: RunOptions,
    config: RunnableConfig,
    batch: BatchOptions | None,
) -> _StartedRun:
    """Start the run where it goes: Ray workers, lanes, or this process."""
    if args.engine == "ray":
        return _start_on_ray(args, plan, budget, options, options.retry)
    if args.lanes:
        return await _start_lanes(args, plan, stack, budget, options, config)
    return await _start_here(args, plan, stack, budget, options, config, batch)


async def _start_lanes(
    args: argparse.Namespace,
    plan: RunPlan,
    stack: AsyncExitStack,
    budget: Any,
    options: RunOptions,
    config: RunnableConfig,
) -> _StartedRun:
    """--lanes: each item to the cheapest lane that meets --deadline, one cap across lanes."""
    from lc_async_pipelines.cli.commands._run_lanes import start_lanes

    records, where, cache, run = await start_lanes(args, plan, stack, budget, options, config)
    return _StartedRun(records, where, cache, run.cap, lanes=run)


def _summary_extra(
    args: argparse.Namespace, plan: RunPlan, budget: Any, started: _StartedRun
) -> dict[str, Any]:
    """The session's own counts, added to the run's summary."""
    extra: dict[str, Any] = {
        "duplicates_skipped": plan.reader.duplicates,
        "id_collisions": plan.reader.collisions,
    }
    if args.engine == "local":  # Ray workers count their own; they are not summed here
        extra["requests_sent"] = budget.requests_sent
        extra["cache_hits"] = getattr(started.cache, "hits", 0)
    if started.meter is not None:
        extra["cost_capped"] = started.meter.capped
    if started.batch_session is not None:
        extra["batch"] = started.batch_session.stats.as_dict()
    if started.lanes is not None:
        extra["lanes"] = started.lanes.report.as_dict()
        print(f"pipelines: {started.lanes.report.describe()}", file=sys.stderr)
    return extra


def _print_totals(
    args: argparse.Namespace,
    plan: RunPlan,
    summary: RunSummary,
    extra: dict[str, Any],
    code: ExitCode,
) -> None:
    """Finish the run file (summary beside the records); the table on stderr, --json on stdout."""
    from lc_async_pipelines.cli._ending import Ending, ending_rows, print_ending
    from lc_async_pipelines.runner.records import summary_path

    totals = plan.run.finish(summary, extra)
    stopped = {ExitCode.COST_CAP: "cost", ExitCode.INTERRUPTED: "signal"}.get(code)
    if code == ExitCode.TERMINATED:
        stopped = "signal"
    ending = Ending(
        records=str(args.output),
        summary_file=str(summary_path(args.output)),  # as the user spelled --output
        argv=getattr(args, "argv", ()),
        stopped=stopped,
        rpm=args.rpm,
        tpm=args.tpm,
    )
    print_ending(f"pipelines: {plan.spec.name}", ending_rows(totals, ending), ending.argv)
    if args.json:
        import json

        print(json.dumps({"summary": totals}), flush=True)


def _report_table(plan: RunPlan) -> None:
    """--output a table: say how many rows it has now, and where its records are."""
    run, info = plan.run, plan.run.table_info
    if run.table is None or info is None:
        return
    print(
        f"pipelines: wrote {run.table}: {info.rows} rows, {info.columns} columns "
        f"(records in {run.records.name})",
        file=sys.stderr,
    )
    if info.from_records:
        print(
            f"pipelines: note: {info.from_records} rows no longer match their line of "
            f"{run.manifest.input}; their input columns come from the records",
            file=sys.stderr,
        )


def _exit_code(
    args: argparse.Namespace,
    signals: StopSignals,
    meter: CostMeter | SharedCap | None,
    summary: RunSummary,
) -> ExitCode:
    """Stopped by a signal, stopped at --max-cost, some items failed, or all done."""
    if signals.exit_code is not None:
        return signals.exit_code
    if meter is not None and meter.capped:
        print(
            f"pipelines: stopped at --max-cost ${args.max_cost:g}: ${meter.spent_usd:.4f} spent "
            "over the run; give the same command with a higher --max-cost to go on",
            file=sys.stderr,
        )
        return ExitCode.COST_CAP
    return ExitCode.for_items(summary.failed)
