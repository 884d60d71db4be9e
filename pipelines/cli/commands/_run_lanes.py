"""``pipelines run --lanes ... --deadline ...``: the lanes set up for a run, and the dry run's plan.

Each lane runs the same chain on its own model: ``standard`` on the run's
session (budget, cache, fallback), ``flex`` on a copy of its chat model with
``service_tier="flex"`` under the same budget, ``batch`` on a Batch API
session (:class:`~lc_async_pipelines.runner.batch.BatchSession`, no retries:
a failed or cancelled line goes back to the planner). The planner and the run
are :mod:`lc_async_pipelines.runner.lanes`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._checks import check_paths, fail_usage
from lc_async_pipelines.cli._lanes_args import lanes_model_problem
from lc_async_pipelines.cli.commands._run_plan import (
    check_engine_and_cost_flags,
    check_first_rows,
    input_token_cap,
    load_price_table,
    pipeline_from_args,
    read_run_items,
)
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable, RunnableConfig

    from lc_async_pipelines.cli.commands._run_plan import RunPlan
    from lc_async_pipelines.runner import Item, Record, RunOptions
    from lc_async_pipelines.runner.lanes import Lane, LaneKind, LaneRun, LaneState

__all__ = ["lane_states", "print_lanes_plan", "prior_throughput", "start_lanes"]

# Before a lane's pace is measured: a standard call is assumed to take 2 s, a
# flex call 10 s (OpenAI: flex answers are slower, and may be refused with 429).
_STANDARD_CALL_S = 2.0
_FLEX_CALL_S = 10.0
_FLEX_TIMEOUT_S = 900.0  # OpenAI's flex guide: raise the client timeout (default 10 min) to 15


def _call_s(lane: str) -> float:
    return _FLEX_CALL_S if lane == "flex" else _STANDARD_CALL_S


def prior_throughput(args: argparse.Namespace, lane: str) -> float:
    """Items a second a requests lane is assumed to do before it is measured."""
    window = float(args.concurrency)
    paced = window / _call_s(lane)
    if args.rpm:  # one call an item assumed; map-reduce makes more, and is measured
        paced = min(paced, float(args.rpm) / 60)
    return paced


def lane_states(args: argparse.Namespace, per_item: dict[str, float | None]) -> list[LaneState]:
    """The lanes of ``--lanes`` as the planner sees them before anything ran.

    ``per_item``: lane name -> estimated cost of an item there, USD.
    """
    from lc_async_pipelines.runner.lanes import LaneState

    states = []
    for name in args.lanes:
        cost = per_item.get(name)
        kind: LaneKind = "batch" if name == "batch" else "requests"
        states.append(
            LaneState(
                name,
                kind=kind,
                cost_per_item_usd=cost,
                prior_throughput=prior_throughput(args, name),
                latency_s=0.0 if kind == "batch" else _call_s(name),
            )
        )
    return states


def print_lanes_plan(args: argparse.Namespace) -> ExitCode:
    """--dry-run with --lanes: the plan (items, cost and expected finish per lane); no call."""
    import json

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.runner.costs import estimate_run
    from lc_async_pipelines.runner.lanes import cancel_margin, plan_lanes
    from lc_async_pipelines.runner.records import done_ids, records_path

    check_paths(args)
    check_engine_and_cost_flags(args)
    spec, options = pipeline_from_args(args)
    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    problem = lanes_model_problem(args, settings)
    if problem:
        fail_usage(problem)
    prices = load_price_table(args, settings)
    reader, required = read_run_items(args, spec, options)
    head = [item for _, item in zip(range(5), reader, strict=False)]
    check_first_rows(head, args, required)
    items = list(itertools.chain(head, reader))
    from lc_async_pipelines.cli.commands._dry_run import _priced_model_name

    model = _priced_model_name(settings)

    def estimate(lane: str) -> Any:
        return asyncio.run(
            estimate_run(
                lambda llm: spec.build(llm, **options),
                items,
                model=model,
                prices=prices,
                batch=lane == "batch",
                flex=lane == "flex",
                max_tokens=settings.max_tokens or 512,
                limit=args.limit,
                skip=frozenset(done_ids(records_path(args.output))),
                max_input_tokens=input_token_cap(args, spec, settings),
                prompt_tokens=spec.prompt_tokens,
            )
        )

    estimates = {name: estimate(name) for name in {"standard", *args.lanes}}
    count = estimates["standard"].items
    per = {
        name: None if e.cost_usd is None or not count else e.cost_usd / count
        for name, e in estimates.items()
    }
    deadline_s = args.deadline - time.time()
    states = lane_states(args, per)
    plan = plan_lanes(
        states,
        unassigned=count,
        now=0.0,
        deadline=deadline_s,
        max_cost_usd=args.max_cost,
        cancel_margin_s=cancel_margin(deadline_s),
        shared_rate=args.rpm / 60 if args.rpm else None,
    )
    switch = _batch_switch(states, plan, deadline_s)
    prices_text = estimates["standard"].prices
    text, data = _describe_plan(args, plan, per, count, deadline_s, switch, prices_text)
    print(text, file=sys.stderr)
    print(json.dumps({"plan": data}))
    return ExitCode.OK


def _batch_switch(states: list[LaneState], plan: Any, deadline_s: float) -> float | None:
    """The latest time the batch's lines can move, were it to show no progress at all."""
    from lc_async_pipelines.runner.lanes import cancel_margin, plan_lanes

    given = plan.assign.get("batch", 0)
    if not given:
        return None
    loaded = [
        dataclasses.replace(s, in_flight=given, started_at=0.0, progress=0.0)
        if s.name == "batch"
        else s
        for s in states
    ]
    later = plan_lanes(
        loaded,
        unassigned=0,
        now=0.0,
        deadline=deadline_s,
        cancel_margin_s=cancel_margin(deadline_s),
    )
    return later.switch_by.get("batch")


def _clock(seconds: float) -> str:
    """``45s``, ``12m30s`` or ``6h00m``: a span for people, to the minute past two minutes."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours}h{minutes:02d}m"


def _describe_plan(
    args: argparse.Namespace,
    plan: Any,
    per: dict[str, float | None],
    count: int,
    deadline_s: float,
    switch: float | None,
    prices: str,
) -> tuple[str, dict[str, Any]]:
    """The plan as lines for people, and as JSON."""
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(args.deadline))
    cap = f", cap ${args.max_cost:g}" if args.max_cost is not None else ""
    lines = [f"plan: {count:,} items by {_clock(deadline_s)} from now ({when}){cap}; no call made"]
    lanes: dict[str, Any] = {}
    for name in args.lanes:
        items = plan.items.get(name, 0)
        unit = per.get(name)
        cost = None if unit is None else unit * items
        finish = plan.finish.get(name)
        if not items:
            expect = "-"
        elif finish is not None:
            expect = f"done in about {_clock(finish)}"
        else:
            expect = "within the deadline if the batch keeps pace (measured as it runs)"
            if switch is not None:
                expect += f"; else its unfinished lines move to faster lanes by {_clock(switch)}"
        shown = "unpriced" if cost is None else f"${cost:.4f}"
        lines.append(f"  {name:<9}{items:>9,} items  {shown:>10}  {expect}")
        lanes[name] = {"items": items, "cost_usd": cost, "finish_s": finish}
    standard = per.get("standard")
    all_standard = None if standard is None else standard * count
    total = plan.cost_usd
    if all_standard is not None:
        lines.append(
            f"cost: ${total:.4f} (all standard: ${all_standard:.4f}; "
            f"saves ${all_standard - total:.4f})"
        )
    if plan.held:
        lines.append(f"{plan.held:,} items do not fit under --max-cost: the run stops at the cap")
    if not plan.meets_deadline:
        lines.append(
            "deadline: no plan meets it at the assumed paces; late items go to the fastest lane"
        )
    lines.append(f"prices: {prices}")
    data = {
        "items": count,
        "deadline_s": round(deadline_s, 1),
        "lanes": lanes,
        "cost_usd": total,
        "all_standard_usd": all_standard,
        "held": plan.held,
        "meets_deadline": plan.meets_deadline,
        "batch_switch_by_s": switch,
    }
    return "\n".join(lines), data


async def start_lanes(
    args: argparse.Namespace,
    plan: RunPlan,
    stack: AsyncExitStack,
    budget: Any,
    options: RunOptions,
    config: RunnableConfig,
) -> tuple[AsyncIterator[Record], str, Any, LaneRun]:
    """Open each lane's model, build the lanes and the run; return (records, where, cache, run)."""
    from lc_async_pipelines.cli.commands._run_session import open_run_session
    from lc_async_pipelines.runner.lanes import LaneOptions, LaneRun, tick_for
    from lc_async_pipelines.runner.records import lanes_path

    deadline_s = args.deadline - time.time()
    if deadline_s <= 0:
        fail_usage("--deadline has passed already")
    session = await open_run_session(args, plan, stack, budget, options)
    given = _BatchItems(lanes_path(plan.run.output))
    run = LaneRun(
        [],
        LaneOptions(
            deadline_s=deadline_s,
            max_cost_usd=args.max_cost,
            prior_usd=plan.run.prior.cost_usd,
            limit=args.limit,
            skip=frozenset(plan.done),
            stop=options.stop,
            grace_s=args.grace,
            pinned=dict.fromkeys(given.ids, "batch") if "batch" in args.lanes else {},
            on_give=given.note,
            shared_rate=args.rpm / 60 if args.rpm else None,  # one call an item assumed
        ),
    )
    builder = _LaneBuilder(args, plan, session, options, config, run)
    lanes: list[Lane] = []
    for name in args.lanes:
        if name == "batch":
            lanes.append(await builder.batch(stack, tick_for(deadline_s)))
        else:
            lanes.append(builder.requests(name))
    run.lanes = {lane.name: lane for lane in lanes}
    where = f"{session.description}; lanes {', '.join(args.lanes)} by {_clock(deadline_s)}"
    return run.records(plan.items), where, session.cache, run


class _BatchItems:
    """The ids of the items given to the batch lane, in ``OUTPUT.lanes.json`` (atomic rewrite).

    A resumed run gives them to its batch lane first: their calls find the
    batch an earlier session sent (``OUTPUT.batches.json``) and wait on it,
    instead of being paid again in another lane.
    """

    def __init__(self, path: Path) -> None:
        import json

        self.path = path
        self.ids: set[str] = set()
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.ids = {str(i) for i in data.get("batch", [])}
            except (OSError, ValueError, AttributeError):
                fail_usage(f"{path}: not a lanes file; run again with --restart to move it aside")

    def note(self, lane: str, items: Sequence[Item]) -> None:
        """Record the items just given to ``lane`` when it is the batch lane."""
        if lane != "batch":
            return
        import json

        from lc_async_pipelines.runner.records import write_atomic

        self.ids.update(item.id for item in items)
        write_atomic(self.path, json.dumps({"format": 1, "batch": sorted(self.ids)}) + "\n")


@dataclasses.dataclass
class _LaneBuilder:
    """Builds each lane of a run on the run's session."""

    args: argparse.Namespace
    plan: RunPlan
    session: Any
    options: RunOptions
    config: RunnableConfig
    run: LaneRun

    def meter(self, lane: str, chain: Runnable[Any, Any]) -> Any:
        from lc_async_pipelines.runner.costs import CostMeter, chain_max_tokens

        return CostMeter(
            self.plan.prices,
            model=self.session.settings.model_name,
            batch=lane == "batch",  # estimates at the lane's price
            flex=lane == "flex",
            output_tokens=chain_max_tokens(chain) or self.plan.settings.max_tokens or 512,
            warn_unpriced=self.plan.settings.known_provider or self.args.prices is not None,
        )

    def requests(self, name: str) -> Lane:
        from lc_async_pipelines.cli.commands._flex_lane import DEFAULT_FLEX_WAIT_S
        from lc_async_pipelines.runner import RetryPolicy
        from lc_async_pipelines.runner.lanes import RequestLane
        from lc_async_pipelines.runner.limits import FlexOptions

        llm: Any = self.session.llm
        if name == "flex":  # service_tier=flex; past --flex-wait a call goes standard
            retry = self.options.retry or RetryPolicy()
            wait = self.args.flex_wait
            llm = llm.with_flex(
                FlexOptions(
                    wait_s=DEFAULT_FLEX_WAIT_S if wait is None else wait,
                    timeout_s=max(_FLEX_TIMEOUT_S, self.plan.settings.timeout),
                    initial=retry.initial,
                    max_wait=retry.max_wait,
                    jitter=retry.jitter,
                )
            )
        chain = self.plan.spec.build(llm, **self.plan.options)
        options = dataclasses.replace(self.options, costs=self.meter(name, chain))
        return RequestLane(
            name,
            chain,
            options,
            self.run.emit,
            self.run.clock,
            window=self.args.concurrency,
            prior_throughput=prior_throughput(self.args, name),
            prior_latency_s=_call_s(name),
            config=self.config,
        )

    async def batch(self, stack: AsyncExitStack, poll_s: float) -> Lane:
        from langchain_core.runnables import RunnableConfig

        from lc_async_pipelines.runner import RetryPolicy
        from lc_async_pipelines.runner.batch import BatchLimits, BatchOptions, batches_path
        from lc_async_pipelines.runner.lanes import BatchLane
        from lc_async_pipelines.runner.limits import RateBudget
        from lc_async_pipelines.session import model_session

        batch_options = BatchOptions(
            state_path=batches_path(self.plan.run.output),
            window_s=self.args.batch_window,
            limits=BatchLimits(max_tokens=self.args.max_enqueued_tokens),
            poll_initial_s=min(1.0, poll_s),
            poll_max_s=poll_s,  # progress is read at each poll: as often as the planner looks
        )
        session = await stack.enter_async_context(
            model_session(self.plan.settings, budget=RateBudget(), batch=batch_options)
        )
        chain = self.plan.spec.build(session.llm, **self.plan.options)
        no_retry = RetryPolicy(max_retries=0)  # a failed line goes back to the planner
        options = dataclasses.replace(
            self.options, retry=no_retry, costs=self.meter("batch", chain)
        )
        control = session.batch
        assert control is not None
        # no max_concurrency: every call of the lane's items joins the same stage
        config = RunnableConfig(callbacks=self.config.get("callbacks", []))
        return BatchLane(
            "batch", chain, options, self.run.emit, self.run.clock, control=control, config=config
        )
