"""Runs on Ray: a worker killed mid-run, and the driver killed and resumed, lose nothing.

A local Ray is started by this module and stopped after it. The endpoint is the
benchmark mock in its own process, with 10% faults; it answers "echo: <prompt>",
so every story must end with its own topic.
"""

import asyncio
import logging
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.mock_server import spawn
from lc_async_pipelines.builtin import STORY
from lc_async_pipelines.engines import ChainRecipe, run_items_on_ray
from lc_async_pipelines.engines.ray import RAY_NAMESPACE
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.runner import Item, RetryPolicy, RunOptions

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ray-test-SECRET-0123456789"
ITEMS = 1000
RETRY = RetryPolicy(max_retries=10, initial=0.05, max_wait=0.5, jitter=0.05)

# The driver of the second test: a run through run_items_on_ray, written by the
# runner's own records machinery (lock, manifest, resume), as the command line does.
# The driver killed with kill -9 and resumed: tests/integration/test_distributed_cli.py, through
# the command line as a user runs it.


def topics(n):
    return [f"the harbour {i:04d} lighthouse" for i in range(n)]  # none inside another


def mock():
    return spawn("--fault-rate", "0.1", "--hang", "2", "--latency", "0.02", "--seed", "12")


@pytest.fixture(scope="module")
def cluster():
    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def our_actors():
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == RAY_NAMESPACE
    ]


def assert_each_once_and_matched(records, expected):
    by_input = Counter(r["input"] for r in records)
    assert sorted(by_input) == sorted(expected)  # none lost
    assert max(by_input.values()) == 1  # none twice
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        assert record["error"] is None, record
        assert record["output"].endswith(f"about {record['input']}."), record["output"]


async def test_a_worker_killed_mid_run_loses_nothing(cluster):
    texts = topics(ITEMS)
    items = [Item(f"t{i:04d}", i + 1, text) for i, text in enumerate(texts)]
    records = []
    killed = restarted = None
    with mock() as base:
        settings = ModelSettings(api_key=KEY, base_url=base + "/v1", model="mock", timeout=1)
        recipe = ChainRecipe(STORY, {"max_words": 20}, settings, concurrency=16, retry=RETRY)
        run = run_items_on_ray(recipe, items, RunOptions(retry=RETRY), workers=2)
        async for record in run:
            records.append(record.to_dict())
            if len(records) == 300:
                names = our_actors()
                assert len(names) == 2
                victim = ray.get_actor(names[0], namespace=RAY_NAMESPACE)
                killed = await victim.pid.remote()
                os.kill(killed, signal.SIGKILL)
            if len(records) == 900:
                restarted = await asyncio.wait_for(victim.pid.remote(), 30)
    assert killed is not None and restarted not in (None, killed)  # the kill took effect
    assert_each_once_and_matched(records, texts)
    assert our_actors() == []  # the run ended its workers


async def test_skip_limit_repeats_and_stop_as_in_run_items(cluster):
    texts = topics(200)
    items = [Item(f"t{i:04d}", i + 1, text) for i, text in enumerate(texts)]
    with mock() as base:
        settings = ModelSettings(api_key=KEY, base_url=base + "/v1", model="mock", timeout=1)
        recipe = ChainRecipe(STORY, {"max_words": 20}, settings, concurrency=16, retry=RETRY)
        # limit counts distinct items, skipped ones included; a repeated id runs once
        skip = frozenset(f"t{i:04d}" for i in range(10))
        options = RunOptions(retry=RETRY, skip=skip, limit=30)
        run = run_items_on_ray(recipe, items[:5] + items, options, workers=2)
        got = [record.id async for record in run]
        assert sorted(got) == [f"t{i:04d}" for i in range(10, 30)]
        # stop: no new item; with no grace, what is in flight leaves no record
        stop = asyncio.Event()
        got = []
        run = run_items_on_ray(recipe, items, RunOptions(retry=RETRY, stop=stop, grace_s=0),
                               workers=2)  # fmt: skip
        async for record in run:
            got.append(record.id)
            if len(got) == 20:
                stop.set()
    assert 20 <= len(got) <= 20 + 2 * 16 and len(set(got)) == len(got)
    assert our_actors() == []
