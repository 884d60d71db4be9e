"""--cache on the embedded model: a second run, on a new server and port, sends no request."""

import json
import os
import subprocess
import sys


def run(src, out, cache):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.pop("PIPELINES_EMBEDDED_URL", None)  # each run starts its own llama-server
    cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
           "--output", str(out), "--max-words", "50", "--concurrency", "3",
           "--cache", str(cache), "--restart", "--json"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    outputs = {r["input"]: r["output"] for r in map(json.loads, out.read_text().splitlines())}
    return summary, outputs


def test_a_cached_run_is_answered_without_requests(embedded_server, tmp_path):
    # embedded_server: the session's build of llama-server exists before these runs.
    src = tmp_path / "topics.txt"
    src.write_text("a paper boat\na lost key\na quiet robot\n")
    cache = tmp_path / "llm-cache.sqlite"
    first, outputs = run(src, tmp_path / "a.jsonl", cache)
    second, again = run(src, tmp_path / "b.jsonl", cache)
    assert (first["requests_sent"], first["cache_hits"]) == (3, 0)
    assert (second["requests_sent"], second["cache_hits"]) == (0, 3)
    assert again == outputs
    assert all(len(text.split()) >= 10 for text in outputs.values())
