"""The Redis budget and cache on a real redis-server (started here) against the mock endpoint.

Also runnable, for the figures (two processes sharing one budget, or each with
its own): ``python -m tests.integration.test_redis measure --items 500 --rps 50``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from benchmarks import mock_server, redis_server
from lc_async_pipelines.errors import BudgetUnavailable
from lc_async_pipelines.runner import Item, RetryPolicy, RunOptions, run_items, with_budget
from lc_async_pipelines.runner.caches import RedisCache
from lc_async_pipelines.runner.limits import RedisRateBudget, open_budget
from lc_async_pipelines.runner.limits import _redis_scripts as scripts

ROOT = Path(__file__).resolve().parents[2]
RETRY = RetryPolicy(max_retries=6, initial=0.5, max_wait=10)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server.spawn() as url:
        yield url


def chain_for(base: str, budget, cache=None):
    # Imported here: the worker process builds its chain after its start-up.
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from lc_async_pipelines import ModelSettings, make_chat_model
    from lc_async_pipelines.runner import with_cache

    settings = ModelSettings(api_key="x", base_url=base + "/v1", model="mock", max_tokens=8)
    llm = make_chat_model(settings, streaming=False)
    if cache is not None:
        llm = with_cache(llm, cache)
    prompt = ChatPromptTemplate.from_messages([("human", "{text}")])
    return {"text": lambda t: t} | prompt | with_budget(llm, budget) | StrOutputParser()


async def run_texts(chain, texts: list[str], concurrency: int = 8) -> list:
    items = [Item(f"i{n}", n, text) for n, text in enumerate(texts)]
    options = RunOptions(concurrency=concurrency, retry=RETRY)
    return [r async for r in run_items(chain, items, options)]


def stats(base: str) -> dict:
    return httpx.get(base + "/stats", timeout=5, trust_env=False).json()


def all_matched(records, texts) -> bool:
    by_input = {r.input: r for r in records}
    return len(records) == len(texts) and all(
        by_input[t].ok and by_input[t].output.endswith(t) for t in texts
    )


# The scripts themselves, on a clock the test sets (ms).


def test_the_scripts_space_requests_pause_and_meter_tokens(redis_url):
    client = redis.Redis.from_url(redis_url)
    reserve, adjust = (
        client.register_script(scripts.RESERVE),
        client.register_script(scripts.ADJUST),
    )
    pause = client.register_script(scripts.PAUSE)
    keys = ["{t1}:rpm", "{t1}:tpm", "{t1}:pause", "{t1}:latest"]
    now = 5_000_000.0

    def rpm_wait(at: float) -> float:  # 100 ms apart, room for 2, primed with 1
        return reserve(keys=keys, args=[100, 2, 0, 0, 1000, 0, 0, at, 60_000])[0] / 1000

    assert [rpm_wait(now) for _ in range(4)] == [0, 100, 200, 300]  # no burst at the start
    assert rpm_wait(now + 1_000) == 0 and rpm_wait(now + 1_000) == 0  # idle: one catch-up, no more
    assert rpm_wait(now + 1_000) == 100
    assert float(pause(keys=keys[2:3], args=[2_000, now + 1_000])) == now + 3_000
    assert float(pause(keys=keys[2:3], args=[10, now + 1_000])) == now + 3_000  # not cut short
    # every process waits out the 429's pause, and the bucket is as full after it as
    # before: no catch-up burst into the provider's fresh window
    assert [rpm_wait(now + 1_000) for _ in range(3)] == [2_000, 2_100, 2_200]

    def tokens_wait(tokens: float, at: float = now) -> float:  # 1 token per ms, 1,000 deep
        return reserve(keys=keys, args=[0, 2, tokens, 1, 1000, 0, 0, at, 60_000])[0] / 1000

    client.delete(*keys)
    assert tokens_wait(300) == 300  # starts full: no burst
    assert tokens_wait(2_500) == 2_800  # larger than the bucket: waits for it to drain enough
    adjust(keys=keys[1:2], args=[-2_000, 1, 1000, now, 60_000])  # refunded after the call
    # 2,000 ms sooner than without the refund, but never before a send already reserved
    assert tokens_wait(100) == 2_800 and tokens_wait(100) == 2_800
    assert tokens_wait(1_000) == 3_500
    later = now + 6_000
    adjust(keys=keys[1:2], args=[-1e9, 1, 1000, later, 60_000])  # never below empty
    assert tokens_wait(1_000, later) == 0 and tokens_wait(1, later) == 1
    # state lost (a restart without persistence): resumes from what the client saw
    client.delete(*keys)
    floor = now + 5_000
    assert reserve(keys=keys, args=[100, 2, 0, 0, 1000, floor, 0, now, 60_000])[0] / 1000 == 4_900
    assert 0 < client.pttl(keys[0]) <= 65_100  # idle keys expire
    client.close()


def test_the_reserve_script_holds_a_provider_s_window_of_whole_requests(redis_url):
    client = redis.Redis.from_url(redis_url)
    reserve, adjust = (
        client.register_script(scripts.RESERVE),
        client.register_script(scripts.ADJUST),
    )
    keys = [f"{{w1}}:{part}" for part in
            ("rpm", "tpm", "pause", "latest", "window", "window_tokens", "bookings")]  # fmt: skip
    now = 7_000_000.0
    per_ms = 49.5 / 1000  # tpm 3000 less 1%; a window of 1 s (+20 ms) admits 50 tokens

    def send(tokens: float, at: float, late: tuple[object, float] = (0, 0)) -> tuple[float, bytes]:
        args = [0, 2, tokens, per_ms, 1000, 0, 0, at, 60_000, 0, 50, 1020, *late]
        wait_us, _, _, booking = reserve(keys=keys, args=args)
        return at + wait_us / 1000, booking

    # calls of 4 tokens: the bucket alone lets a 13th (52 tokens) into 0.97 s
    sent = []
    for _ in range(13):
        at, booking = send(4, sent[-1] if sent else now)
        sent.append(at)
    assert sent[12] - sent[0] == pytest.approx(1020)  # it waits for the first to leave
    assert sent[11] - sent[0] < 1000
    # a settled refund frees the window at once (and the bucket); a late send moves its booking
    adjust(keys=[keys[1], keys[5]], args=[-4, per_ms, 1000, sent[12], 60_000, booking])
    assert float(client.hget(keys[5], booking)) == 0
    score = client.zscore(keys[4], booking)
    send(0.001, sent[12], late=(booking, 30))
    assert client.zscore(keys[4], booking) == pytest.approx(score + 30)
    client.close()


# Two OS processes, one budget.


def worker_command(**options: object) -> list[str]:
    command = [sys.executable, "-m", "tests.integration.test_redis", "worker"]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def run_workers(budget: str, mock: str, redis_url: str, key: str, rpm: float, items: int,
                workers: int = 2, concurrency: int = 8,
                margin: float = 0.01, start_in_s: float = 8) -> tuple[float, list[dict]]:  # fmt: skip
    """Start the workers together, after their imports; return the start time and their results."""
    start_at = time.time() + start_in_s
    procs = [
        subprocess.Popen(
            worker_command(
                budget=budget,
                mock=mock,
                redis=redis_url,
                key=key,
                rpm=rpm,
                items=items,
                tag=f"w{n}",
                start_at=start_at,
                concurrency=concurrency,
                margin=margin,
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return start_at, results


def test_two_processes_sharing_a_budget_hold_the_endpoint_s_limit(redis_url):
    per_worker = 50  # 100 calls at 10 requests/s; unshared, half of them would be 429s
    with mock_server.spawn("--rpm", "600") as base:
        # 5% under the limit, not the default 1%: the mock's one-second windows start
        # at a request's arrival, and on a loaded machine one late arrival can shift
        # a window onto one request too many (the default's figures: the measure command).
        _, results = run_workers(
            "redis", base, redis_url, "two-processes", 600, per_worker, margin=0.05, start_in_s=4
        )
        seen = stats(base)
    assert [r["ok"] for r in results] == [per_worker, per_worker]  # all done, each its own
    assert seen["completed"] == 2 * per_worker
    assert max(seen["completions_by_prompt"].values()) == 1
    # Unshared, about half would be 429s. Shared, a few may still be: the mock scales
    # per-minute limits to one-second windows, the same span as the budget's bucket,
    # so room saved up while a loaded machine is slow to send can fill a window twice.
    throttled = seen.get("429_rate_limit", 0)
    assert throttled <= 0.05 * seen["requests"], seen
    # one reservation per call (a retry after a 429 is a call too), one pause shared per
    # 429 of the limit or response that said the limit is spent, and one more
    # reservation for a turn a pause overtook
    assert sum(r["round_trips"] for r in results) == seen["requests"] + sum(
        r["rate_limited"] + r["held"] + r["requeued"] for r in results
    )


async def test_two_budgets_share_tokens_per_minute_corrected_by_usage(redis_url):
    texts = [[f"tokens {b} topic {n}" for n in range(60)] for b in "ab"]
    # 200 tokens/s, 9 a call, charged 15 by estimate: unshared, two budgets would send
    # twice that. 5% under the limit: a call is 4.5% of the mock's one-second window,
    # and refunds at the end of a run free room for a few calls at once.
    with mock_server.spawn("--tpm", "12000") as base:
        budgets = [RedisRateBudget(url=redis_url, key="tpm", tpm=12000, margin=0.05) for _ in "ab"]
        for budget in budgets:
            await budget.connect()
        results = await asyncio.gather(
            *(run_texts(chain_for(base, b), t) for b, t in zip(budgets, texts, strict=True))
        )
        for budget in budgets:
            await budget.aclose()
        seen = stats(base)
    assert all(all_matched(r, t) for r, t in zip(results, texts, strict=True))
    # Unshared, about half would be 429s; shared, a few may be (see the test above).
    assert seen.get("429_rate_limit", 0) <= 0.05 * seen["requests"], seen
    # At most two round-trips a call: a reservation, then either the charge corrected by
    # the reported usage (none when the charge, what replies use, was exact) or, for a
    # 429 of the limit, the pause shared with the others; and a new reservation for a
    # turn a pause overtook.
    calls = sum(b.requests_sent for b in budgets)
    extra = sum(b.requeued + b.held for b in budgets)
    assert calls + extra <= sum(b.round_trips for b in budgets) <= 2 * calls + extra


# The cache.


async def test_the_redis_cache_answers_a_second_run_with_no_request(redis_url):
    texts = [f"cached topic {n}" for n in range(10)]
    with mock_server.spawn() as base:
        first_cache = RedisCache(redis_url, ttl_s=600, prefix="test-cache:")
        await first_cache.aclear()
        budget = RedisRateBudget(url=redis_url, key="cache-test", rpm=6_000)
        async with budget:
            first = await run_texts(chain_for(base, budget, first_cache), texts)
            sent = stats(base)["requests"]
            # another process' cache object: shares nothing with the first but Redis
            second_cache = RedisCache(redis_url, ttl_s=600, prefix="test-cache:")
            second = await run_texts(chain_for(base, budget, second_cache), texts)
        assert stats(base)["requests"] == sent == len(texts)
    assert all_matched(first, texts) and all_matched(second, texts)
    assert {r.input: r.output for r in first} == {r.input: r.output for r in second}
    assert (first_cache.hits, first_cache.misses) == (0, len(texts))
    assert (second_cache.hits, second_cache.misses) == (len(texts), 0)
    assert budget.requests_sent == len(texts)  # hits skip the budget
    client = redis.Redis.from_url(redis_url)
    keys = client.keys("test-cache:*")
    assert len(keys) == len(texts) and all(0 < client.pttl(k) <= 600_000 for k in keys)
    second_cache.clear()
    assert client.keys("test-cache:*") == []
    client.close()
    for cache in (first_cache, second_cache):
        await cache.aclose()


# Redis down at start, and lost mid-run.


async def test_redis_down_at_start_is_budget_unavailable():
    with redis_server.spawn() as url:
        pass  # started and stopped: nothing listens there now
    port = urlsplit(url).port
    budget = open_budget(f"redis://:Zq9-hunter2-x@127.0.0.1:{port}/0", rpm=600, key="k")
    with pytest.raises(BudgetUnavailable) as caught:
        async with budget:
            pass
    message = str(caught.value)
    assert f"redis://[redacted]@127.0.0.1:{port}/0" in message and "hunter2" not in message
    assert "\n" not in message


async def test_calls_wait_out_a_redis_restart_and_resume_without_a_burst(caplog):
    per_budget = 40
    texts = [[f"restart {b} topic {n}" for n in range(per_budget)] for b in "ab"]
    with contextlib.ExitStack() as first_redis, mock_server.spawn("--rpm", "1200") as base:
        url = first_redis.enter_context(redis_server.spawn())
        port = urlsplit(url).port
        # 5% under the limit: see the two-process test
        budgets = [RedisRateBudget(url=url, key="restart", rpm=1200, margin=0.05) for _ in "ab"]
        done: list = []
        twenty = asyncio.Event()

        async def one(budget, batch):
            chain = chain_for(base, budget)
            items = [Item(f"i{n}", n, text) for n, text in enumerate(batch)]
            out = []
            async for record in run_items(chain, items, RunOptions(concurrency=8, retry=RETRY)):
                out.append(record)
                done.append(record)
                if len(done) >= 20:
                    twenty.set()
            return out

        with caplog.at_level(
            logging.WARNING, logger="lc_async_pipelines.runner.limits.redis_budget"
        ):
            for budget in budgets:
                await budget.connect()
            runs = [asyncio.create_task(one(b, t)) for b, t in zip(budgets, texts, strict=True)]
            await twenty.wait()
            first_redis.close()  # Redis gone, and its state with it (no persistence)
            stopped_at = len(done)
            await asyncio.sleep(1.0)
            during = len(done) - stopped_at  # only calls reserved before the kill
            with redis_server.spawn(port=port):
                results = await asyncio.gather(*runs)
            for budget in budgets:
                await budget.aclose()
        seen = stats(base)
    assert all(all_matched(r, t) for r, t in zip(results, texts, strict=True))
    assert during < 2 * 8  # nothing went through on its own: at most what was in flight
    assert seen.get("429_rate_limit", 0) == 0  # no burst when Redis came back
    assert seen["completed"] == 2 * per_budget
    assert max(seen["completions_by_prompt"].values()) == 1
    warned = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warned) == 2  # one per budget for the outage, not one per call
    assert all("never unlimited" in m for m in warned)


# The worker process and the figures.


async def worker(args: argparse.Namespace) -> dict:
    from lc_async_pipelines.runner import RateBudget

    if args.budget == "redis":
        budget = RedisRateBudget(url=args.redis, key=args.key, rpm=args.rpm, margin=args.margin)
    else:
        budget = RateBudget(rpm=args.rpm, margin=args.margin)
    texts = [f"{args.tag} topic {n}" for n in range(args.items)]
    async with budget:
        chain = chain_for(args.mock, budget)
        late = time.time() - args.start_at
        if late < 0:
            await asyncio.sleep(-late)
        began, cpu = time.time(), time.process_time()
        records = await run_texts(chain, texts, args.concurrency)
        ended, cpu = time.time(), time.process_time() - cpu
    return {
        "ok": sum(r.ok and r.output.endswith(r.input) for r in records),
        "late_s": round(max(0.0, late), 3),
        "began": began,
        "ended": ended,
        "cpu_s": cpu,
        "requests_sent": budget.requests_sent,
        "throttled": budget.throttled,
        "rate_limited": budget.rate_limited,
        "requeued": budget.requeued,
        "held": budget.held,
        "round_trips": getattr(budget, "round_trips", 0),
    }


def measure(args: argparse.Namespace) -> None:
    rpm = args.rps * 60
    total = args.items
    rows = [
        ("memory", 1, "one process, in-memory budget at the limit (the reference)"),
        ("memory", args.workers, "each process its own in-memory budget at the limit (today)"),
        ("redis", args.workers, "one Redis budget shared"),
    ]
    with redis_server.spawn() as url:
        for mode, workers, label in rows:
            with mock_server.spawn("--rpm", str(rpm), "--latency", str(args.latency)) as base:
                _, results = run_workers(
                    mode, base, url, f"measure-{time.time()}", rpm, total // workers,
                    workers, args.concurrency,
                )  # fmt: skip
                seen = stats(base)
            wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
            calls = seen["requests"]
            row = {
                "budget": label,
                "processes": workers,
                "items": total,
                "wall/bound": round(wall / (total / args.rps), 3),
                "429s/call": round(seen.get("429_rate_limit", 0) / calls, 4),
                "lost": total - sum(r["ok"] for r in results),
                "redis round-trips/call": round(sum(r["round_trips"] for r in results) / calls, 3),
                "client cpu ms/call": round(1000 * sum(r["cpu_s"] for r in results) / calls, 2),
                "first 429s at s": seen.get("throttled_at_s", [])[:8],
            }
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("worker")
    one.add_argument("--mock", required=True)
    one.add_argument("--budget", choices=("memory", "redis"), default="redis")
    one.add_argument("--redis", required=True)
    one.add_argument("--key", required=True)
    one.add_argument("--rpm", type=float, required=True)
    one.add_argument("--items", type=int, required=True)
    one.add_argument("--tag", required=True)
    one.add_argument("--start-at", type=float, required=True)
    one.add_argument("--concurrency", type=int, default=8)
    one.add_argument("--margin", type=float, default=0.01)
    fig = sub.add_parser("measure")
    fig.add_argument("--items", type=int, default=500)
    fig.add_argument("--rps", type=float, default=50)
    fig.add_argument("--workers", type=int, default=2)
    fig.add_argument("--concurrency", type=int, default=16)
    fig.add_argument("--latency", type=float, default=0.05, help="the mock's, seconds")
    args = parser.parse_args()
    if args.command == "worker":
        print(json.dumps(asyncio.run(worker(args))), flush=True)
    else:
        measure(args)


if __name__ == "__main__":
    main()
