"""SIGINT and kill -9 in the middle of a real run, then a resume: nothing lost, nothing twice."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

TOPICS = [f"a town where {thing}" for thing in (
    "it always rains", "clocks run backwards", "cats are mayors", "nobody sleeps",
    "the river sings", "maps lie", "bread is money", "snow is warm",
)]  # fmt: skip


def start(server, src, out):
    env = {**os.environ, "PIPELINES_EMBEDDED_URL": server.base_url}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
           "--output", str(out), "--concurrency", "2", "--max-words", "60", "--grace", "60"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_records(out, n, proc, limit=300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and out.read_text().count("\n") >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"no {n} records in time; exit {proc.poll()}")


def records_of(out):
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""  # only whole lines
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "kill-9"])
def test_stop_then_resume(sig, embedded_server, tmp_path):
    src = tmp_path / "topics.txt"
    src.write_text("\n".join(TOPICS) + "\n")
    out = tmp_path / "stories.jsonl"
    proc = start(embedded_server, src, out)
    wait_for_records(out, 2, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "  stopped  run the same command to resume:" in stderr  # the ending, on the way out
        assert (tmp_path / "stories.jsonl.summary.json").exists()
    else:
        assert proc.returncode == -signal.SIGKILL
    first = records_of(out)
    assert 2 <= len(first) < len(TOPICS)
    assert len({r["id"] for r in first}) == len(first)

    proc = start(embedded_server, src, out)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    final = records_of(out)
    assert sorted(r["input"] for r in final) == sorted(TOPICS)
    assert all(r["error"] is None and r["output"] for r in final)
    done_before = {r["id"]: r["output"] for r in first if r["error"] is None}
    # finished calls were not repeated: their records are kept as they were
    assert all(done_before[r["id"]] == r["output"] for r in final if r["id"] in done_before)
