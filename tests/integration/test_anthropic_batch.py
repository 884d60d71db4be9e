"""Anthropic's Message Batches through the real command line, against the Anthropic mock.

Every run is ``python -m lc_async_pipelines run summary ... --batch-api`` in a
process of its own, as a user types it: ``-m anthropic:claude-...``, the mock
as ``ANTHROPIC_BASE_URL`` and a test key in ``ANTHROPIC_API_KEY``, none of
the PIPELINES_*/OPENAI_*/ANTHROPIC_* settings of the shell that runs the
tests. Inputs are real text from ``../shared/data``. The mock
(``benchmarks/anthropic_mock.py``) counts every answer it serves per prompt:
a prompt served twice is a request paid twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.mock import AnthropicMockConfig, anthropic_mock_server
from tests.integration.test_batch_api import (
    COMBINE_PREFIX,
    MAP_ASK,
    MAP_PREFIX,
    cli,
    echoes_its_input,
    kill_when,
    paragraphs,
    records,
    sidecar,
    start,
    stories,
    write_input,
)

KEY = "sk-ant-test-batch-SECRET-0123456789"
MODEL = "claude-3-5-haiku-latest"
PRICE = {"input": 0.8, "cached_input": 0.08, "output": 4.0, "batch_input": 0.4,
         "batch_output": 2.0, "batch_cached_input": 0.04}  # fmt: skip


def environment(base_url: str) -> dict[str, str]:
    """The test's environment without any PIPELINES_*, OPENAI_*, ANTHROPIC_* or proxy setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINES_", "OPENAI_", "ANTHROPIC_", "LANGSMITH_"))
        and not k.lower().endswith("_proxy")
    }
    env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=KEY, NO_PROXY="127.0.0.1")
    return env


def command(src: Path, out: Path, prices: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "lc_async_pipelines", "run", "summary", "--input", str(src),
            "--output", str(out), "-m", f"anthropic:{MODEL}", "--batch-api",
            "--prices", str(prices), *extra]  # fmt: skip


def stats(base_url: str) -> dict[str, Any]:
    counts: dict[str, Any] = httpx.get(base_url + "/stats", timeout=5, trust_env=False).json()
    return counts


def combines_its_own_parts(record: dict[str, Any]) -> bool:
    """The combine's echo holds map echoes, the first starting with its own input's words.

    Unlike the OpenAI mock, this one honours ``max_tokens`` on every call, so
    the combine echo holds two map echoes or more (each 64 words at most): it
    is longer than the combine's opening and one map echo. The map echoes
    after the first begin with the same sentence (``MAP_PREFIX``), which the
    summary leaves out as a repeat.
    """
    output: str = record["output"]
    if not output.startswith(COMBINE_PREFIX):
        return False
    parts = output.split(MAP_PREFIX)[1:]
    first = parts[0].split(MAP_ASK, 1)[0].split()[:20] if parts else []
    longer = len(output.split()) > len(COMBINE_PREFIX.split()) + len(MAP_PREFIX.split()) + 64
    return longer and len(first) >= 5 and first == record["input"].split()[: len(first)]


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"source": "test", "as_of": "2026-01-01", "models": {MODEL: PRICE}}))
    return path


def test_300_items_killed_twice_then_resumed_pay_each_request_once(
    tmp_path: Path, prices: Path
) -> None:
    texts = paragraphs(300)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    out = tmp_path / "out.jsonl"
    cmd = command(src, out, prices)
    config = AnthropicMockConfig(
        api_key=KEY, models=(MODEL,), batch_delay_s=2.0, batch_error_rate=0.05,
        batch_expire_rate=0.05, seed=7,
    )  # fmt: skip
    with anthropic_mock_server(config) as base_url:
        env = environment(base_url)

        def batches() -> int:
            return int(stats(base_url).get("batches_created", 0))

        # killed while the first batch (all 300) is in progress
        kill_when(start(cmd, env, tmp_path, "s1"), lambda: batches() == 1)
        assert not out.exists() or out.read_text() == ""
        # again: waits on that batch, then killed once its errored and expired
        # requests are in a second batch
        kill_when(start(cmd, env, tmp_path, "s2"), lambda: batches() == 2)
        written = len(out.read_text().splitlines())
        last = cli(cmd, env, tmp_path, "s3")
        counts = stats(base_url)
    assert last.code == 0, last.stderr[-3000:]
    done = records(out)
    assert len(done) == 300 and sorted(r["input"] for r in done.values()) == sorted(texts)
    for key, record in done.items():  # each output is its own input's answer
        assert record["error"] is None and echoes_its_input(record), key
    # nothing paid twice: each prompt answered once, every answer from a batch
    assert not counts["served_again"] and counts["completed"] == 300
    assert counts["batch_succeeded"] == 300 and counts.get("requests", 0) == 0
    failed = counts.get("batch_errored", 0) + counts.get("batch_expired", 0)
    assert failed > 0  # the retries were exercised
    assert counts["batch_requests"] == 300 + failed  # each failed request sent once more
    # the second session wrote what the first batch answered; the third waited on
    # the second batch instead of sending its requests again
    assert 0 < written < 300
    session = sidecar(out)["session"]["batch"]
    assert session["batches_resumed"] >= 1 and session["requests_resumed"] > 0
    state = json.loads((tmp_path / "out.jsonl.batches.json").read_text())
    assert {b["provider"] for b in state["batches"]} == {"anthropic"}
    assert {b["status"] for b in state["batches"]} == {"ended"}
    assert len(state["batches"]) == counts["batches_created"]
    # priced at the batch price, the saving counted
    summary = sidecar(out)
    assert summary["cost_usd"] > 0
    assert summary["batch_saved_usd"] == pytest.approx(summary["cost_usd"], rel=1e-6)
    for name in ("s1", "s2", "s3"):
        assert KEY not in (tmp_path / f"{name}.stderr").read_text()
    assert KEY not in (tmp_path / "out.jsonl.batches.json").read_text()


def test_a_map_reduce_through_anthropic_batches_is_two_stages(tmp_path: Path, prices: Path) -> None:
    texts = stories(5)
    src = write_input(tmp_path / "stories.jsonl", texts)
    out = tmp_path / "out.jsonl"
    with anthropic_mock_server(AnthropicMockConfig(batch_delay_s=0.5)) as base_url:
        # 64-word echoes of the map prompts, as the OpenAI mock's
        env = {**environment(base_url), "PIPELINES_MAX_TOKENS": "64"}
        run = cli(command(src, out, prices), env, tmp_path, "run")
        counts = stats(base_url)
    assert run.code == 0, run.stderr[-3000:]
    assert "from provider anthropic at " + base_url in run.stderr
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert all(r["error"] is None for r in done.values())
    assert all(r["calls"] >= 3 for r in done.values())  # two map calls or more, then the combine
    assert all(combines_its_own_parts(r) for r in done.values())
    assert counts["batches_created"] == 2  # the map stage, the combine stage
    assert counts["batch_requests"] == sum(r["calls"] for r in done.values())
    assert counts.get("requests", 0) == 0  # no call went around the batches
    assert not counts["served_again"]


def test_failed_requests_go_on_their_own_with_batch_retry_request(
    tmp_path: Path, prices: Path
) -> None:
    texts = paragraphs(40)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    out = tmp_path / "out.jsonl"
    config = AnthropicMockConfig(batch_delay_s=0.2, batch_error_rate=0.2, seed=3)
    with anthropic_mock_server(config) as base_url:
        cmd = command(src, out, prices, "--batch-retry", "request")
        run = cli(cmd, environment(base_url), tmp_path, "run")
        counts = stats(base_url)
    assert run.code == 0, run.stderr[-3000:]
    done = records(out)
    assert all(r["error"] is None and echoes_its_input(r) for r in done.values())
    assert counts["batches_created"] == 1 and counts["batch_errored"] > 0
    assert counts["requests"] == counts["batch_errored"]  # each sent once, on its own
    assert not counts["served_again"]
    assert sidecar(out)["batch"]["requests_direct"] == counts["batch_errored"]
    # those went at the standard price, each counted once; the rest at the batch price
    alone = [r for r in done.values() if r["batch_saved_usd"] == 0]
    assert len(alone) == counts["batch_errored"]
    assert all(r["cost_usd"] > 0 and r["calls"] == 1 for r in alone)
    batched = [r for r in done.values() if r["batch_saved_usd"] > 0]
    assert all(r["batch_saved_usd"] == pytest.approx(r["cost_usd"]) for r in batched)


def test_a_wrong_key_exits_2_in_one_line_before_any_batch(tmp_path: Path, prices: Path) -> None:
    src = write_input(tmp_path / "p.jsonl", paragraphs(3))
    out = tmp_path / "out.jsonl"
    with anthropic_mock_server(AnthropicMockConfig(api_key="sk-ant-the-right-one")) as base_url:
        run = cli(command(src, out, prices), environment(base_url), tmp_path, "run")
        counts = stats(base_url)
    assert run.code == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "401" in last and "authentication_error" in last and KEY not in run.stderr
    assert counts.get("batches_created", 0) == 0
    assert not out.exists() or out.read_text() == ""


async def test_the_adapter_creates_finds_cancels_and_reads_batches_through_the_sdk() -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import HumanMessage

    from lc_async_pipelines.runner.batch._anthropic import AnthropicBatches
    from lc_async_pipelines.runner.batch._anthropic_format import to_params
    from lc_async_pipelines.runner.batch._files import custom_id

    config = AnthropicMockConfig(api_key=KEY, batch_delay_s=30.0)
    with anthropic_mock_server(config) as base_url:
        model = ChatAnthropic(model=MODEL, api_key=KEY, base_url=base_url, max_tokens=20)
        provider = AnthropicBatches(model, 10)
        await provider.open()
        part = []
        for i in range(5):
            params = to_params(
                [HumanMessage(f"request number {i}")], {"model": MODEL, "max_tokens": 20}
            )
            part.append(provider.request(custom_id("/v1/messages", params), "/v1/messages", params))
        entry = {"id": None, "requests": 5, "created_at": int(time.time())}
        assert await provider.find(entry, set()) is None  # nothing created yet
        created = await provider.create(entry, part, {})
        assert created.status == "in_progress" and not created.ended
        # killed before the id was recorded: the resumed run finds the batch ...
        found = await provider.find(entry, set())
        assert found is not None and found.id == created.id
        # ... unless it is another entry's, or of another size
        assert await provider.find(entry, {created.id}) is None
        assert await provider.find({**entry, "requests": 4}, set()) is None
        await provider.cancel(created.id)
        ended = await provider.retrieve(created.id)
        assert ended.ended and ended.fields["request_counts"]["canceled"] == 2
        results = await provider.results({"id": created.id})
        await provider.aclose()
        counts = stats(base_url)
    assert set(results) == {r.custom_id for r in part}
    statuses = sorted(r.status for r in results.values())
    assert statuses == [200, 200, 200, 503, 503]  # half reached (rounded up), the rest canceled
    assert counts["batches_cancelled"] == 1 and counts["batch_canceled"] == 2
