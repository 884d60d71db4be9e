"""``pipelines run --lane flex`` against the benchmark mock serving flex: refusals, then standard."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.integration.mock import MockConfig, mock_server

N = 24
M = 1_000_000


def test_flex_refusals_are_retried_then_sent_standard_and_each_record_is_priced_at_its_tier(
    tmp_path,
):
    src = tmp_path / "topics.txt"
    src.write_text("".join(f"topic {i}\n" for i in range(N)))
    out = tmp_path / "out.jsonl"
    config = MockConfig(latency_s=0.01, flex_latency_factor=3, flex_unavailable_rate=0.6, seed=5)
    with mock_server(config) as base_url:
        env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test"}
        env.pop("PIPELINES_EMBEDDED_URL", None)
        env.pop("PIPELINES_MODEL", None)
        cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
               "--output", str(out), "-m", "gpt-5-mini", "--lane", "flex", "--flex-wait", "3",
               "--concurrency", "8", "--max-words", "20"]  # fmt: skip
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        stats = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
    assert done.returncode == 0, done.stderr
    assert "at the flex tier" in done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == N and all(r["error"] is None for r in records)
    tiers = [r["service_tier"] for r in records]
    assert set(tiers) == {"flex", "default"}  # some answered at flex, some sent standard
    refusals = [sum(h["status"] == 429 for h in r["history"]) for r in records]
    for record, refused in zip(records, refusals, strict=True):
        if record["service_tier"] == "default":
            assert refused >= 1, record  # standard only after flex refused it
    # every flex request the mock saw is one the records account for; none answered twice
    assert stats["429_flex_unavailable"] == sum(refusals)
    assert stats["flex_requests"] == sum(refusals) + tiers.count("flex")
    assert stats["completed_flex"] == tiers.count("flex")
    assert stats.get("served_again", {}) == {}
    # gpt-5-mini (genai-prices): standard $0.25 in / $2 out; flex $0.125 / $1
    for record in records:
        usage = record["usage"]
        rates = (0.125, 1.0) if record["service_tier"] == "flex" else (0.25, 2.0)
        expected = (usage["input_tokens"] * rates[0] + usage["output_tokens"] * rates[1]) / M
        assert record["cost_usd"] == pytest.approx(expected, rel=1e-6), record
