import io
import json
import random

import httpx
import openai
import pytest
from langchain_core.runnables import RunnableLambda

from lc_async_pipelines.errors import ConfigurationError, DeadlineExceeded
from lc_async_pipelines.runner import (
    Item,
    RetryPolicy,
    RunOptions,
    read_items,
    run_items,
    write_records,
)

FAST = RetryPolicy(max_retries=4, initial=0.001, max_wait=0.002, jitter=0.001)


def items(n: int) -> list[Item]:
    return [Item(f"id{i}", i + 1, f"input-{i}") for i in range(n)]


def flaky_chain(seed: int, fault_rate: float, permanent: set[str]):
    rng = random.Random(seed)
    request = httpx.Request("POST", "http://127.0.0.1/")

    async def call(text: str) -> str:
        if text in permanent:
            raise openai.BadRequestError(
                "bad", response=httpx.Response(400, request=request), body=None
            )
        if rng.random() < fault_rate:
            raise rng.choice(
                [
                    openai.RateLimitError(
                        "slow", response=httpx.Response(429, request=request), body=None
                    ),
                    openai.APIConnectionError(request=request),
                    openai.InternalServerError(
                        "oops", response=httpx.Response(503, request=request), body=None
                    ),
                ]
            )
        return f"out:{text}"

    return RunnableLambda(call)


async def collect(chain, its, **kw):
    config = kw.pop("config", None)
    return [r async for r in run_items(chain, its, RunOptions(retry=FAST, **kw), config=config)]


async def test_outputs_stay_matched_under_faults():
    permanent = {"input-3", "input-77"}
    chain = flaky_chain(seed=1, fault_rate=0.2, permanent=permanent)
    records = await collect(chain, items(300), config={"max_concurrency": 16})
    assert sorted(r.id for r in records) == sorted(f"id{i}" for i in range(300))
    for r in records:
        if r.input in permanent:
            assert r.error["type"] == "BadRequestError" and r.attempts == 1
        elif r.ok:
            assert r.output == f"out:{r.input}"
        else:  # out of retries: only a transient error may end here
            assert r.attempts == FAST.max_retries + 1
    assert sum(r.attempts > 1 for r in records) > 20  # faults did happen and were retried
    assert sum(not r.ok for r in records) >= len(permanent)


async def test_permanent_error_stays_with_its_item():
    chain = flaky_chain(seed=2, fault_rate=0.0, permanent={"input-1"})
    records = {r.id: r for r in await collect(chain, items(5))}
    assert not records["id1"].ok
    assert all(records[f"id{i}"].ok for i in (0, 2, 3, 4))


async def test_bad_input_rows_become_error_records(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "good"}\n{broken\n{"text": ""}\n')
    records = await collect(flaky_chain(0, 0.0, set()), read_items(path))
    by_line = {r.line: r for r in records}
    assert by_line[1].output == "out:good"
    assert by_line[2].error["type"] == "RowError" and by_line[2].attempts == 0
    assert "line 3" in by_line[3].error["message"]


async def test_duplicates_skipped_and_limit_applies():
    dup = [Item("same", 1, "x"), Item("same", 2, "x"), Item("b", 3, "y"), Item("c", 4, "z")]
    records = await collect(flaky_chain(0, 0.0, set()), dup, limit=2)
    assert sorted(r.id for r in records) == ["b", "same"]


async def test_window_bounds_items_in_flight():
    import asyncio

    live = peak = 0

    async def call(text: str) -> str:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0)
        live -= 1
        return text

    await collect(RunnableLambda(call), items(50), config={"max_concurrency": 5})
    assert peak == 5


async def test_write_records_writes_one_line_per_record():
    out = io.StringIO()
    records = run_items(flaky_chain(0, 0.0, {"input-2"}), items(4), RunOptions(retry=FAST))
    summary = await write_records(records, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 4
    assert {"id", "input", "output", "error", "attempts", "latency_s", "usage"} <= set(lines[0])
    assert (summary.done, summary.failed) == (3, 1)


async def test_stop_lets_in_flight_finish_and_starts_nothing_new():
    import asyncio

    stop = asyncio.Event()
    started = []

    async def call(text: str) -> str:
        started.append(text)
        await asyncio.sleep(0.01)
        return f"out:{text}"

    records = []
    async for record in run_items(
        RunnableLambda(call), items(40), RunOptions(concurrency=4, stop=stop, grace_s=5)
    ):
        records.append(record)
        if len(records) == 6:
            stop.set()
    assert len(started) < 40
    assert len(records) == len(started)  # every started item finished within the grace period
    assert all(r.output == f"out:{r.input}" for r in records)


async def test_grace_period_cancels_stragglers_without_records():
    import asyncio

    stop = asyncio.Event()

    async def call(text: str) -> str:
        if text != "input-0":
            await asyncio.sleep(30)
        return text

    records = []
    async for record in run_items(
        RunnableLambda(call), items(3), RunOptions(concurrency=3, stop=stop, grace_s=0.05)
    ):
        records.append(record)
        stop.set()
    assert [r.id for r in records] == ["id0"]


def test_summary_percentiles():
    from lc_async_pipelines.runner import Record, RunSummary

    summary = RunSummary(wall_s=10.0)
    for i in range(1, 101):
        summary.add(
            Record(
                id=str(i),
                line=i,
                input="x",
                output="y",
                attempts=1,
                latency_s=float(i),
                ttft_s=i / 10,
            )
        )
    totals = summary.as_dict()
    assert (totals["latency_p50_s"], totals["latency_p95_s"]) == (50.0, 95.0)
    assert (totals["ttft_p50_s"], totals["ttft_p95_s"]) == (5.0, 9.5)
    assert totals["items_per_s"] == 10.0


async def test_item_deadline_and_oversized_input_become_error_records():
    import asyncio

    async def call(text: str) -> str:
        if text == "slow":
            await asyncio.sleep(30)
        return text

    work = [Item("a", 1, "slow"), Item("b", 2, "fine"), Item("c", 3, "x" * 4000)]
    records = {
        r.id: r
        async for r in run_items(
            RunnableLambda(call), work, RunOptions(item_timeout_s=0.05, max_input_tokens=1000)
        )
    }
    assert records["a"].error["type"] == "DeadlineExceeded"
    assert isinstance(records["a"].exception, DeadlineExceeded)
    assert records["b"].output == "fine"
    assert records["c"].error["type"] == "RowError" and "line 3" in records["c"].error["message"]
    assert records["c"].attempts == 0


async def test_timeout_inside_the_chain_is_not_called_a_deadline():
    async def call(text: str) -> str:
        raise TimeoutError("request timed out")

    [record] = [
        r
        async for r in run_items(
            RunnableLambda(call), items(1), RunOptions(retry=RetryPolicy(max_retries=0))
        )
    ]
    assert record.error["type"] == "TimeoutError"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"limit": -1},
        {"grace_s": -1},
        {"item_timeout_s": 0},
        {"max_input_tokens": 0},
    ],
)
def test_run_options_refuse_values_out_of_range(kwargs):
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        RunOptions(**kwargs)


async def test_whole_row_items_reach_the_chain_as_objects(tmp_path):
    src = tmp_path / "rows.csv"
    src.write_text("name,city\nAda,London\nAda,London\nGrace,Arlington\n")
    seen = []

    async def call(row: dict) -> str:
        seen.append(row)
        return f"{row['name']} of {row['city']}"

    records = await collect(RunnableLambda(call), read_items(src, whole_rows=True))
    assert sorted(r.output for r in records) == ["Ada of London", "Grace of Arlington"]
    assert all(isinstance(r.input, dict) for r in records)
    assert len(seen) == 2  # the identical row ran once


@pytest.mark.parametrize(
    "kwargs", [{"rpm": 0}, {"rpm": float("nan")}, {"tpm": -5}, {"max_in_flight": 0}, {"margin": 1}]
)
def test_budget_refuses_values_out_of_range(kwargs):
    from lc_async_pipelines.runner import RateBudget

    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        RateBudget(**kwargs)
