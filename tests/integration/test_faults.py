"""1,000 items through a real chain and HTTP client against a mock injecting 20% faults."""

import collections

import httpx

from lc_async_pipelines import ModelSettings, build_story_chain, make_chat_model
from lc_async_pipelines.runner import Item, RetryPolicy, RunOptions, run_items
from tests.integration.mock import MockConfig, mock_server

N = 1000


async def test_faults_lose_nothing_and_keep_outputs_matched():
    config = MockConfig(fault_rate=0.2, hang_s=5.0, seed=7)
    with mock_server(config) as base_url:
        settings = ModelSettings(api_key="sk-test", base_url=base_url, model="mock", timeout=1.0)
        chain = build_story_chain(make_chat_model(settings), max_words=40)
        items = [Item(f"id{i}", i + 1, f"topic number {i}") for i in range(N)]
        retry = RetryPolicy(max_retries=12, initial=0.01, max_wait=0.1, jitter=0.01)
        records = [
            r async for r in run_items(chain, items, RunOptions(concurrency=32, retry=retry))
        ]
        async with httpx.AsyncClient() as client:
            stats = (await client.get(base_url.removesuffix("/v1") + "/stats")).json()
    ids = collections.Counter(r.id for r in records)
    assert len(ids) == N and max(ids.values()) == 1  # none lost, none twice
    for record in records:
        assert record.ok, (record.id, record.error)
        assert record.output.endswith(f"about {record.input}."), record.output
    # faults of every kind were injected and retried
    assert all(
        stats.get(f"fault_{kind}", 0) > 0
        for kind in ("429", "500", "503", "reset", "truncated", "hang")
    )
    assert sum(r.attempts - 1 for r in records) >= stats["requests"] - N - 5
