"""kill -9 during a resume, two runs on one output, and a leaky endpoint: the command line holds.

Against the benchmark mock with faults and ``echo_headers`` (its error bodies
carry the request's headers, ``Authorization: Bearer <key>`` included).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration.mock import MockConfig, mock_server

KEY = "sk-kill-resume-SECRET-0123456789"


def topics(n):
    return [f"the harbour {i:04d} lighthouse" for i in range(n)]  # none inside another


def command(src, out, *extra):
    return [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
            "--output", str(out), "--max-words", "20", *extra]  # fmt: skip


def environment(base_url):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("PIPELINES_EMBEDDED_URL", None)
    env.pop("PIPELINES_EMBEDDED", None)
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=KEY, PIPELINES_MODEL="mock",
               PIPELINES_TIMEOUT="1", NO_PROXY="127.0.0.1")  # fmt: skip
    return env


def start(cmd, env, tmp_path, name):
    err = (tmp_path / f"{name}.stderr").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    err.close()  # the child holds its own copy
    return proc


def lines(out):
    return out.read_bytes().count(b"\n") if out.exists() else 0


def kill_at(proc, out, n, limit=60):
    """SIGKILL ``proc`` once ``out`` holds ``n`` lines; fail if it ends first."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if lines(out) >= n:
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            return lines(out)
        time.sleep(0.01)
    proc.kill()
    proc.wait(30)
    pytest.fail(f"no {n} lines while running (exit {proc.returncode}, {lines(out)} lines)")


def records_of(out):
    raw = out.read_bytes()
    assert raw.endswith(b"\n")  # whole lines only
    return [json.loads(line) for line in raw.splitlines()]


def assert_each_once_and_matched(out, expected):
    records = records_of(out)
    by_input = Counter(r["input"] for r in records)
    assert sorted(by_input) == sorted(expected)  # none lost
    assert max(by_input.values()) == 1  # none twice
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        assert record["error"] is None, record
        assert record["output"].endswith(f"about {record['input']}."), record["output"]


def assert_no_secret(tmp_path):
    files = [p for p in tmp_path.iterdir() if p.suffix in (".jsonl", ".json", ".stderr")]
    assert any(p.suffix == ".stderr" for p in files) and any(p.suffix == ".jsonl" for p in files)
    for path in files:
        text = path.read_text(errors="replace")
        assert KEY not in text, path.name
        assert not re.search(r"Bearer (?!\[redacted\])", text), path.name
        assert "Traceback" not in text, path.name


def test_kill_during_a_resume_then_resume_to_the_end(tmp_path):
    items = topics(300)
    src = tmp_path / "topics.txt"
    src.write_text("\n".join(items) + "\n")
    out = tmp_path / "out.jsonl"
    config = MockConfig(fault_rate=0.2, hang_s=2.0, retry_after_s=0.01, latency_s=0.05,
                        token_delay_s=0.002, seed=11, echo_headers=True)  # fmt: skip
    with mock_server(config) as base_url:
        env = environment(base_url)
        cmd = command(src, out, "--concurrency", "16", "--max-retries", "10",
                      "--cache", str(tmp_path / "cache.sqlite"))  # fmt: skip
        first = kill_at(start(cmd, env, tmp_path, "s1"), out, 60)
        resumed = start(cmd, env, tmp_path, "s2")
        second = kill_at(resumed, out, first + 90)  # killed mid-resume
        assert first < second < len(items)
        last = start(cmd, env, tmp_path, "s3")
        assert last.wait(120) == 0, (tmp_path / "s3.stderr").read_text()[-3000:]
    assert_each_once_and_matched(out, items)
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert manifest["sessions"] == summary["sessions"] == 3
    assert summary["done"] == len(items) and summary["failed"] == 0
    assert "resuming" in (tmp_path / "s3.stderr").read_text()
    assert not (tmp_path / "out.jsonl.lock").exists()  # released at the end
    assert_no_secret(tmp_path)


def test_two_runs_at_once_on_one_output(tmp_path):
    items = topics(80)
    src = tmp_path / "topics.txt"
    src.write_text("\n".join(items) + "\n")
    out = tmp_path / "out.jsonl"
    config = MockConfig(latency_s=0.1, token_delay_s=0.005)  # the winner runs a few seconds
    with mock_server(config) as base_url:
        env = environment(base_url)
        cmd = command(src, out, "--concurrency", "4", "--max-retries", "10")
        began = time.monotonic()
        procs = [start(cmd, env, tmp_path, name) for name in ("a", "b")]
        ended: dict[int, float] = {}
        deadline = began + 120
        while len(ended) < 2 and time.monotonic() < deadline:
            for i, proc in enumerate(procs):
                if i not in ended and proc.poll() is not None:
                    ended[i] = time.monotonic() - began
            time.sleep(0.01)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 2], [(tmp_path / f"{n}.stderr").read_text() for n in "ab"]
    loser = 0 if procs[0].returncode == 2 else 1
    winner = 1 - loser
    message = (tmp_path / f"{'ab'[loser]}.stderr").read_text().strip().splitlines()
    assert len(message) == 1, message
    assert "in use by another run" in message[0] and str(out) in message[0], message
    assert ended[loser] < ended[winner]  # it did not wait for the lock
    assert ended[loser] < 15, ended
    assert_each_once_and_matched(out, items)
    assert json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["sessions"] == 1


def test_a_leaky_endpoint_leaks_no_key(tmp_path):
    # Every fault is an error body echoing the request's headers, and no retries:
    # failed records carry the endpoint's (scrubbed) message.
    items = topics(60)
    src = tmp_path / "topics.txt"
    src.write_text("\n".join(items) + "\n")
    out = tmp_path / "out.jsonl"
    config = MockConfig(fault_rate=0.5, faults=("429", "500", "503"), retry_after_s=0.01,
                        seed=2, echo_headers=True)  # fmt: skip
    with mock_server(config) as base_url:
        env = environment(base_url)
        proc = start(command(src, out, "--concurrency", "8", "--max-retries", "0"), env,
                     tmp_path, "run")  # fmt: skip
        assert proc.wait(120) == 1, (tmp_path / "run.stderr").read_text()[-3000:]
    records = records_of(out)
    failed = [r for r in records if r["error"] is not None]
    assert len(records) == len(items) and failed  # the endpoint's message reached records
    assert any("request headers" in r["error"]["message"] for r in failed)
    assert all("[redacted]" in r["error"]["message"] for r in failed)
    assert json.loads((tmp_path / "out.jsonl.summary.json").read_text())["failed"] == len(failed)
    assert_no_secret(tmp_path)
