"""A run over lanes with fake models: records say their lane, the cap holds across lanes,
and a batch that can no longer make the deadline gives its items to a faster lane."""

from __future__ import annotations

import asyncio
import itertools

from langchain_core.messages import AIMessage

from lc_async_pipelines.runner import Item, RunOptions
from lc_async_pipelines.runner.costs import CostMeter, load_prices
from lc_async_pipelines.runner.lanes import (
    BatchLane,
    LaneOptions,
    LaneRun,
    RequestLane,
)
from lc_async_pipelines.runner.retry import RetryPolicy
from tests.unit.fakes import FnChatModel

MODEL = "gpt-4o-mini"


def _items(n: int) -> list[Item]:
    return [Item(id=f"i{n_:03d}", line=n_ + 1, input=f"topic {n_}") for n_ in range(n)]


def _model(tier: str | None, calls: list[str], *, wait: asyncio.Event | None = None):
    async def answer(messages, **kwargs) -> AIMessage:
        text = str(messages[-1].content)
        if wait is not None:
            await wait.wait()
            raise RuntimeError("batch_cancelled: this line did not run")
        calls.append(text)
        metadata = {"model_name": MODEL, **({"service_tier": tier} if tier else {})}
        usage = {"input_tokens": 10, "output_tokens": 400, "total_tokens": 410}
        return AIMessage(content=f"echo: {text}", response_metadata=metadata, usage_metadata=usage)

    return FnChatModel(fn=answer)


def _options(tier: str) -> RunOptions:
    meter = CostMeter(load_prices(), model=MODEL, batch=tier == "batch", flex=tier == "flex")
    return RunOptions(retry=RetryPolicy(max_retries=0), costs=meter)


async def _collect(run: LaneRun, items: list[Item]) -> list:
    return [record async for record in run.records(items)]


def test_each_record_says_its_lane_and_the_cheap_lane_saves() -> None:
    calls: list[str] = []

    async def main() -> list:
        run = LaneRun([], LaneOptions(deadline_s=3600.0, tick_s=0.01), clock=lambda: 0.0)
        flex = RequestLane("flex", _model("flex", calls), _options("flex"), run.emit,
                           run.clock, window=4, prior_throughput=0.005)  # fmt: skip
        standard = RequestLane("standard", _model(None, calls), _options("standard"), run.emit,
                               run.clock, window=4, prior_throughput=5.0)  # fmt: skip
        run.lanes = {"flex": flex, "standard": standard}
        return await _collect(run, _items(30))

    records = asyncio.run(main())
    assert len(records) == 30 and all(r.ok for r in records)
    by_lane = {lane: [r for r in records if r.lane == lane] for lane in ("flex", "standard")}
    assert len(by_lane["flex"]) == 18  # 0.005 items/s over an hour: what flex finishes in time
    assert len(by_lane["standard"]) == 12
    assert all(r.lane_saved_usd > 0 for r in by_lane["flex"])
    assert all(r.lane_saved_usd == 0 for r in by_lane["standard"])
    assert all(r.output.content == f"echo: {r.input}" for r in records)
    assert sorted(calls) == sorted(f"topic {i}" for i in range(30))  # each paid once


def test_the_cap_holds_across_lanes() -> None:
    calls: list[str] = []
    cap = 0.005

    async def main() -> tuple[list, LaneRun]:
        options = LaneOptions(deadline_s=3600.0, tick_s=0.01, max_cost_usd=cap)
        run = LaneRun([], options, clock=lambda: 0.0)  # the clock stands still
        flex = RequestLane("flex", _model("flex", calls), _options("flex"), run.emit,
                           run.clock, window=4, prior_throughput=0.002)  # fmt: skip
        standard = RequestLane("standard", _model(None, calls), _options("standard"), run.emit,
                               run.clock, window=4, prior_throughput=5.0)  # fmt: skip
        run.lanes = {"flex": flex, "standard": standard}
        return await _collect(run, _items(100)), run

    records, run = asyncio.run(main())
    spent = sum(r.cost_usd for r in records)
    assert spent <= cap
    assert run.cap.capped
    assert 0 < len(records) < 100
    assert {r.lane for r in records} == {"flex", "standard"}  # both lanes drew from one cap
    assert len(calls) == len(records)  # nothing started that was not written


class _Batch:
    """A provider whose batch never progresses; cancelling it fails its waiting lines."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.asked = 0

    def progress(self) -> tuple[int, int]:
        return (0, 10)

    async def cancel(self) -> int:
        self.asked += 1
        self.cancelled.set()
        return 1


def test_a_batch_too_slow_for_the_deadline_gives_its_items_to_a_faster_lane() -> None:
    calls: list[str] = []
    ticks = itertools.count(0.0, 2.0)  # the controlled clock: 2 s more at each look

    async def main() -> tuple[list, LaneRun, _Batch]:
        control = _Batch()
        run = LaneRun([], LaneOptions(deadline_s=100.0, tick_s=0.01, cancel_margin_s=5.0),
                      clock=lambda: next(ticks))  # fmt: skip
        batch = BatchLane("batch", _model("batch", calls, wait=control.cancelled),
                          _options("batch"), run.emit, run.clock, control=control)  # fmt: skip
        standard = RequestLane("standard", _model(None, calls), _options("standard"), run.emit,
                               run.clock, window=4, prior_throughput=1.0)  # fmt: skip
        run.lanes = {"batch": batch, "standard": standard}
        return await _collect(run, _items(10)), run, control

    records, run, control = asyncio.run(main())
    assert control.asked == 1  # cancelled once, not at every look
    assert run.report.cancelled == ["batch"]
    assert len(records) == 10 and all(r.ok for r in records)
    assert {r.lane for r in records} == {"standard"}
    assert run.report.moved == 10
    assert sorted(calls) == sorted(f"topic {i}" for i in range(10))
