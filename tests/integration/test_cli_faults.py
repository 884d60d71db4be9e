"""The command line over 1,000 items with 20% injected faults, stopped by SIGTERM, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

from tests.integration.mock import MockConfig, mock_server

N = 1000


def test_sigterm_mid_run_then_resume_loses_nothing(tmp_path):
    src = tmp_path / "topics.jsonl"
    src.write_text(
        "".join(json.dumps({"id": f"t{i}", "topic": f"topic {i}"}) + "\n" for i in range(N))
    )
    src.write_text(src.read_text() + "{broken\n")  # a bad row: its own record
    out = tmp_path / "out.jsonl"
    with mock_server(
        MockConfig(fault_rate=0.2, hang_s=5.0, retry_after_s=0.01, seed=3)
    ) as base_url:
        env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test",
               "PIPELINES_MODEL": "mock", "PIPELINES_TIMEOUT": "1"}  # fmt: skip
        env.pop("PIPELINES_EMBEDDED_URL", None)
        cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
               "--output", str(out), "--concurrency", "32", "--max-retries", "10",
               "--max-words", "20"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and (not out.exists() or out.read_text().count("\n") < 200):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        first = out.read_bytes()
        assert first.endswith(b"\n")
        assert first.count(b"\n") < N

        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 1, proc.stderr  # only the broken row failed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert len(records) == len(by_id) == N + 1  # none lost, none twice
    assert by_id["line-1001"]["error"]["type"] == "RowError"
    for i in range(N):
        record = by_id[f"t{i}"]
        assert record["error"] is None, record
        assert record["output"].endswith(f"about topic {i}."), record["output"]
