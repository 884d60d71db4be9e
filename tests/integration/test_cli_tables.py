"""--output x.csv / x.parquet against the benchmark mock: killed mid-run, run again, each item once.

The records are the journal (``OUTPUT.records.jsonl``); the table is written
from them when a session ends. After a ``kill -9`` the next session resumes
from the records and writes the table whole again.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.mock import MockConfig, mock_server

pq = pytest.importorskip("pyarrow.parquet")


def write_input(path, n):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["doc_id", "topic", "shelf"])
        for i in range(n):
            writer.writerow([f"d{i:04d}", f"the harbour {i:04d} lighthouse", f"shelf {i % 7}"])


def command(src, out, *extra):
    return [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
            "--output", str(out), "--id-field", "doc_id", "--max-words", "20", *extra]  # fmt: skip


def environment(base_url):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("PIPELINES_EMBEDDED_URL", None)
    env.pop("PIPELINES_EMBEDDED", None)
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test", PIPELINES_MODEL="mock",
               PIPELINES_TIMEOUT="2", NO_PROXY="127.0.0.1")  # fmt: skip
    return env


def start(cmd, env, tmp_path, name):
    with (tmp_path / f"{name}.stderr").open("w") as err:
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)


def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_at(proc, records, n, limit=60):
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if lines(records) >= n:
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            return
        time.sleep(0.01)
    proc.kill()
    proc.wait(30)
    pytest.fail(f"no {n} records while running (exit {proc.returncode})")


def read_table(path):
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_killed_then_run_again_holds_every_item_once(tmp_path, suffix):
    n = 120
    src = tmp_path / "docs.csv"
    write_input(src, n)
    out = tmp_path / f"stories{suffix}"
    records = tmp_path / f"stories{suffix}.records.jsonl"
    config = MockConfig(fault_rate=0.1, retry_after_s=0.01, latency_s=0.05,
                        token_delay_s=0.002, seed=5)  # fmt: skip
    with mock_server(config) as base_url:
        env = environment(base_url)
        cmd = command(src, out, "--concurrency", "8", "--max-retries", "10")
        kill_at(start(cmd, env, tmp_path, "s1"), records, 40)
        assert not out.exists()  # no session ended: no table yet, never a partial one
        again = start(cmd, env, tmp_path, "s2")
        assert again.wait(120) == 0, (tmp_path / "s2.stderr").read_text()[-3000:]
    rows = read_table(out)
    assert [r["id"] for r in rows] == [f"d{i:04d}" for i in range(n)]  # each once, input order
    for i, row in enumerate(rows):
        assert row["topic"] == f"the harbour {i:04d} lighthouse"
        assert row["shelf"] == f"shelf {i % 7}"
        assert row["doc_id"] == row["id"]
        assert row["output"].endswith(f"about {row['topic']}."), row["output"]
        assert row["error"] in ("", None) and row["error_class"] in ("", None)
        assert float(row["latency_s"]) > 0 and int(row["output_tokens"]) > 0
    assert "resuming" in (tmp_path / "s2.stderr").read_text()
    assert f"wrote {out}: {n} rows" in (tmp_path / "s2.stderr").read_text()
    journal = [json.loads(line) for line in records.read_text().splitlines()]
    assert sorted(r["id"] for r in journal) == [r["id"] for r in rows]
    if suffix == ".parquet":  # typed columns
        schema = pq.read_schema(out)
        assert str(schema.field("output_tokens").type) == "int64"
        assert str(schema.field("latency_s").type) == "double"


def test_restart_moves_the_table_and_its_records_aside(tmp_path):
    src = tmp_path / "docs.csv"
    write_input(src, 6)
    out = tmp_path / "stories.csv"
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        assert start(command(src, out), env, tmp_path, "a").wait(60) == 0
        first = out.read_bytes()
        proc = start(command(src, out, "--restart"), env, tmp_path, "b")
        assert proc.wait(60) == 0, (tmp_path / "b.stderr").read_text()
    backups = sorted(p.name for p in tmp_path.glob("stories.csv.bak-*"))
    assert len(backups) == 4, backups  # the table, its records, manifest and summary
    assert (tmp_path / backups[0]).read_bytes() == first  # the table, the shortest name
    assert len(read_table(out)) == 6


def test_a_csv_not_written_by_a_run_is_refused(tmp_path):
    src = tmp_path / "docs.csv"
    write_input(src, 3)
    out = tmp_path / "mine.csv"
    out.write_text("a,b\n1,2\n")
    proc = subprocess.run(command(src, out), capture_output=True, text=True, cwd=tmp_path,
                          env=environment("http://127.0.0.1:9/v1"), timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "was not written by a run" in proc.stderr
    assert out.read_text() == "a,b\n1,2\n"
