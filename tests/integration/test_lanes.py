"""A small lanes run through the real command line, against the benchmark mock.

``python -m lc_async_pipelines run --prompt P --lanes batch,flex,standard
--deadline 15s``: the mock's batch takes a minute, far past the deadline, so
the planner must cancel it and give its lines to the flex and standard lanes
(``--concurrency 2``: the faster lanes are assumed slow, at 2 items per 2 s
and per 10 s, so the batch gets items before their paces are measured).
Checked: every item has one record, from a lane it names, with its own
output; no prompt is served twice (a call paid twice); the batch was
cancelled once; the summary's lanes add up. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.mock import MockConfig, mock_server

MODEL = "gpt-4o-mini"


def _env(base_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINES_", "OPENAI_")) and not k.lower().endswith("_proxy")
    }
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test-lanes", NO_PROXY="127.0.0.1")
    return env


def test_a_batch_too_slow_for_the_deadline_is_cancelled_and_its_items_done_elsewhere(
    tmp_path: Path,
) -> None:
    topics = [f"topic {i:03d} about lanes and deadlines" for i in range(40)]
    (tmp_path / "topics.txt").write_text("".join(t + "\n" for t in topics))
    (tmp_path / "p.txt").write_text("Say: {input}\n")
    out = tmp_path / "out.jsonl"
    config = MockConfig(latency_s=0.01, batch_delay_s=60.0, batch_progress=True,
                        flex_unavailable_rate=0.2)  # fmt: skip
    cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "--prompt", str(tmp_path / "p.txt"),
           "--input", str(tmp_path / "topics.txt"), "--output", str(out), "-m", MODEL,
           "--lanes", "batch,flex,standard", "--deadline", "15s", "--flex-wait", "1",
           "--concurrency", "2", "--rpm", "6000", "--json"]  # fmt: skip
    with mock_server(config) as base_url:
        done = subprocess.run(cmd, env=_env(base_url), cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        stats = httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=5).json()
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["input"]["input"] for r in records) == topics  # one record an item
    assert all(r["output"] == f"echo: Say: {r['input']['input']}" for r in records)
    assert {r["lane"] for r in records} <= {"batch", "flex", "standard"}
    assert stats.get("batches_cancelled") == 1
    assert stats.get("served_again") == {}  # no call paid twice
    summary = json.loads(done.stdout.splitlines()[-1])["summary"]
    lanes = summary["lanes"]
    assert sum(lanes["items"].values()) == 40
    assert lanes["cancelled"] == ["batch"]
    flex_records = [r for r in records if r["lane"] == "flex"]
    assert all(r["lane_saved_usd"] >= 0 for r in records)
    assert all("flex" in (r["service_tier"] or "") for r in flex_records)
