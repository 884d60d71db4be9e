"""The Batch API and costs through the real command line, against the benchmark mock.

Every run is ``python -m lc_async_pipelines run summary ...`` in a process of
its own, as a user types it: the mock as the endpoint (``OPENAI_BASE_URL``),
a test key, ``-m gpt-4o-mini``, and none of the PIPELINES_*/OPENAI_* settings
of the shell that runs the tests. Inputs are real text from ``../shared/data``:
news paragraphs, and Project Gutenberg stories long enough for the summary
pipeline to map-reduce them (issue 13).

Prices: the mock answers with the model asked for; the test's price file
prices it (and ``mock``) with the batch price exactly half.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.mock import MockConfig, mock_server

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
NEWS = DATA / "news_summaries" / "writer_summaries.json"
STORIES = DATA / "long_stories" / "squality_test.jsonl"
KEY = "sk-test-batch-SECRET-0123456789"
MODEL = "gpt-4o-mini"
PRICE = {"input": 0.15, "cached_input": 0.075, "output": 0.6, "batch_input": 0.075,
         "batch_output": 0.3}  # fmt: skip
PRICES = {"source": "test", "as_of": "2026-01-01", "models": {"mock": PRICE, MODEL: PRICE}}
MAP_PREFIX = "echo: This is one part of a longer story."  # the mock echoes the map prompt
MAP_ASK = "Summarize what happens in this part"
COMBINE_PREFIX = "echo: These are summaries of consecutive parts of one story:"


# --- inputs ------------------------------------------------------------------------------


def paragraphs(n: int) -> list[str]:
    if not NEWS.is_file():
        pytest.skip(f"{NEWS} is missing (see ../shared/data/README.md)")
    rows = json.loads(NEWS.read_text())
    seen: dict[str, None] = {}
    for article in dict.fromkeys(r["article"] for r in rows):
        for paragraph in article.split("\n"):
            if len(paragraph.split()) >= 15:
                seen.setdefault(paragraph.strip())
    assert len(seen) >= n
    return list(seen)[:n]


def stories(n: int) -> list[str]:
    if not STORIES.is_file():
        pytest.skip(f"{STORIES} is missing (see ../shared/data/README.md)")
    with STORIES.open() as fh:
        documents = dict.fromkeys(json.loads(line)["document"] for line in fh)
    return list(documents)[:n]


def write_input(path: Path, texts: list[str]) -> Path:
    lines = (json.dumps({"id": f"doc{i:04d}", "text": t}) for i, t in enumerate(texts))
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the command line --------------------------------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def environment(base_url: str) -> dict[str, str]:
    """The test process's environment without any PIPELINES_*, OPENAI_* or proxy setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINES_", "OPENAI_")) and not k.lower().endswith("_proxy")
    }
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=KEY, NO_PROXY="127.0.0.1")
    return env


def command(src: Path, out: Path, *extra: str, prices: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "summary", "--input", str(src),
           "--output", str(out), "-m", MODEL]  # fmt: skip
    if prices is not None:
        cmd += ["--prices", str(prices)]
    return cmd + list(extra)


def start(cmd: list[str], env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``cwd`` (a user's folder: no .env of the project), output to files."""
    with (cwd / f"{name}.stdout").open("w") as out, (cwd / f"{name}.stderr").open("w") as err:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)


def finish(proc: subprocess.Popen[bytes], cwd: Path, name: str, limit: float = 300) -> Run:
    code = proc.wait(limit)
    stdout = (cwd / f"{name}.stdout").read_text()
    return Run(code, stdout, (cwd / f"{name}.stderr").read_text())


def cli(cmd: list[str], env: dict[str, str], cwd: Path, name: str) -> Run:
    return finish(start(cmd, env, cwd, name), cwd, name)


def mock_stats(base_url: str) -> dict[str, Any]:
    url = base_url.removesuffix("/v1") + "/stats"
    stats: dict[str, Any] = httpx.get(url, timeout=5, trust_env=False).json()
    return stats


def records(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(by_id) == len(lines), "an item has two records"
    return by_id


def sidecar(out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(out.with_name(out.name + ".summary.json").read_text())
    return summary


def echoes_its_input(record: dict[str, Any]) -> bool:
    """The mock's reply is the prompt's words: the output starts with the record's own input.

    An output cut to length ends in a word and "...": that last word is not compared.
    """
    words = record["output"].split()
    if record["output"].endswith("..."):
        words = words[:-1]
    given = record["input"].split()
    n = min(len(given), len(words) - 1)
    return n >= 10 and words[0] == "echo:" and words[1 : n + 1] == given[:n]


def combines_its_input(record: dict[str, Any]) -> bool:
    """A map-reduce output: the combine prompt, holding its first part's echo, its own text."""
    output: str = record["output"]
    if not output.startswith(COMBINE_PREFIX) or MAP_PREFIX not in output:
        return False
    # the first part's echo: its text, then the map instruction when the part was short
    words = output.split(MAP_PREFIX, 1)[1].split(MAP_ASK, 1)[0].split()
    return len(words) >= 5 and words == record["input"].split()[: len(words)]


def kill_when(
    proc: subprocess.Popen[bytes], condition: Callable[[], bool], limit: float = 120
) -> None:
    """SIGKILL ``proc`` once ``condition()`` holds; fail if the run ends first."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            return
        time.sleep(0.02)
    proc.kill()
    proc.wait(30)
    pytest.fail(f"the condition never held while the run ran (exit {proc.returncode})")


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    return path


# --- issue 13's tests --------------------------------------------------------------------


def test_a_thousand_summaries_through_the_batch_api_match_the_per_request_mode(
    tmp_path: Path, prices: Path
) -> None:
    texts = paragraphs(1000)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    single_out, batch_out = tmp_path / "single.jsonl", tmp_path / "batch.jsonl"
    with mock_server(MockConfig(batch_delay_s=1.0)) as base_url:
        env = environment(base_url)
        # Both at once, to keep the wall time down; the mock tells them apart:
        # single requests count in ``requests``, batch lines in ``batch_lines``.
        # 20 words: every echo (36 words or more) is cut to length, none lengthened,
        # which only the per-request run would do
        words = ("--max-words", "20")
        single = start(command(src, single_out, "--concurrency", "16", *words, prices=prices),
                       env, tmp_path, "single")  # fmt: skip
        batch = start(command(src, batch_out, "--batch-api", *words, prices=prices),
                      env, tmp_path, "batch")  # fmt: skip
        one_run, many_run = finish(single, tmp_path, "single"), finish(batch, tmp_path, "batch")
        counts = mock_stats(base_url)
    assert one_run.code == 0, one_run.stderr[-3000:]
    assert many_run.code == 0, many_run.stderr[-3000:]
    assert "through the Batch API" in many_run.stderr
    assert counts["requests"] == 1000  # the per-request run's; the batch run sent none
    assert counts["batches_created"] == 1 and counts["batch_lines"] == 1000
    assert counts["files_uploaded"] == 1
    one, many = records(single_out), records(batch_out)
    assert len(many) == 1000 and set(many) == set(one)
    assert sorted(r["input"] for r in many.values()) == sorted(texts)
    for key, record in many.items():
        assert record["error"] is None and record["output"] == one[key]["output"], key
        assert record["input"] == one[key]["input"] and echoes_its_input(record), key
        assert record["usage"] == one[key]["usage"], key
        assert record["calls"] == one[key]["calls"] == 1, key
        # the batch price is half: the record says so
        assert one[key]["cost_usd"] > 0 and one[key]["batch_saved_usd"] == 0
        assert record["cost_usd"] == pytest.approx(one[key]["cost_usd"] / 2, rel=1e-6)
        assert record["batch_saved_usd"] == pytest.approx(record["cost_usd"], rel=1e-6)
    summary, single_summary = sidecar(batch_out), sidecar(single_out)
    assert summary["done"] == single_summary["done"] == 1000
    assert summary["cost_usd"] == pytest.approx(single_summary["cost_usd"] / 2, rel=1e-3)
    assert summary["batch"]["batches_created"] == 1
    assert "batch" not in single_summary
    state = (tmp_path / "batch.jsonl.batches.json").read_text()
    assert KEY not in state and KEY not in many_run.stderr


def test_a_map_reduce_over_long_stories_is_two_batch_stages(tmp_path: Path, prices: Path) -> None:
    texts = stories(5)
    src = write_input(tmp_path / "stories.jsonl", texts)
    out = tmp_path / "out.jsonl"
    with mock_server(MockConfig(batch_delay_s=0.5)) as base_url:
        run = cli(command(src, out, "--batch-api", prices=prices), environment(base_url),
                  tmp_path, "run")  # fmt: skip
        counts = mock_stats(base_url)
    assert run.code == 0, run.stderr[-3000:]
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert all(r["error"] is None for r in done.values())
    assert all(r["calls"] >= 3 for r in done.values())  # two map calls or more, then the combine
    assert all(combines_its_input(r) for r in done.values())
    assert counts["batches_created"] == 2  # map stage, combine stage
    assert counts["batch_lines"] == sum(r["calls"] for r in done.values())
    assert counts.get("requests", 0) == 0  # no call went around the batches
    assert sidecar(out)["batch"]["batches_created"] == 2


def test_kill_9_while_a_batch_runs_then_rerun_creates_one_batch_per_stage(
    tmp_path: Path, prices: Path
) -> None:
    texts = stories(4)
    src = write_input(tmp_path / "stories.jsonl", texts)
    out = tmp_path / "out.jsonl"
    cmd = command(src, out, "--batch-api", prices=prices)

    def batches(base_url: str) -> int:
        return int(mock_stats(base_url).get("batches_created", 0))

    def in_progress(base_url: str) -> list[str]:
        url = base_url + "/batches"
        listed = httpx.get(url, timeout=5, trust_env=False).json()["data"]
        return [b["status"] for b in listed]

    with mock_server(MockConfig(batch_delay_s=3.0)) as base_url:
        env = environment(base_url)
        # killed while the map stage's batch is in progress
        kill_when(start(cmd, env, tmp_path, "s1"), lambda: batches(base_url) == 1)
        assert in_progress(base_url) == ["in_progress"]
        assert not out.exists() or out.read_text() == ""
        # run again: waits on that batch, then killed while the combine stage's runs
        kill_when(start(cmd, env, tmp_path, "s2"), lambda: batches(base_url) == 2)
        assert in_progress(base_url)[0] == "in_progress"
        last = cli(cmd, env, tmp_path, "s3")
        counts = mock_stats(base_url)
    assert last.code == 0, last.stderr[-3000:]
    assert counts["batches_created"] == 2  # one per stage, whatever the kills
    assert counts.get("requests", 0) == 0
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert all(r["error"] is None and combines_its_input(r) for r in done.values())
    # every line was answered once: nothing paid twice
    assert counts["batch_lines"] == sum(r["calls"] for r in done.values())
    assert not counts["served_again"]
    session = sidecar(out)["session"]["batch"]
    assert (
        session["batches_created"] == 0 and session["batches_resumed"] == 2
    )  # the map batch (done), the combine batch
    state = json.loads((tmp_path / "out.jsonl.batches.json").read_text())
    assert [b["status"] for b in state["batches"]] == ["completed", "completed"]
    for name in ("s1", "s2", "s3"):
        assert KEY not in (tmp_path / f"{name}.stderr").read_text()


# One kind for every row: items alike in cost, so the cap's estimate from finished items
# holds closely (mixed kinds: see docs/batch-api.md).
ONE_KIND = ("--kind", "document")


def test_max_cost_stops_at_the_cap_and_a_rerun_with_a_higher_cap_finishes(
    tmp_path: Path, prices: Path
) -> None:
    every = paragraphs(180)
    texts, others = every[:150], every[150:]
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    probe_src = write_input(tmp_path / "probe.jsonl", others)
    out, probe_out = tmp_path / "out.jsonl", tmp_path / "probe.out.jsonl"
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        # what an item really costs, measured on 30 other paragraphs of the same source
        probe = cli(command(probe_src, probe_out, "--batch-api", *ONE_KIND, prices=prices), env, tmp_path,
                    "probe")  # fmt: skip
        assert probe.code == 0, probe.stderr[-3000:]
        cap = round(sidecar(probe_out)["cost_usd"] / len(others) * 50, 6)  # about 50 items
        capped = cli(command(src, out, "--batch-api", "--max-cost", str(cap), *ONE_KIND, prices=prices),
                     env, tmp_path, "capped")  # fmt: skip
        stopped_at = len(records(out))
        capped_summary = sidecar(out)
        resumed = cli(command(src, out, "--batch-api", "--max-cost", str(cap * 10), *ONE_KIND,
                              prices=prices), env, tmp_path, "resumed")  # fmt: skip
        counts = mock_stats(base_url)
    assert capped.code == 3, capped.stderr[-3000:]
    assert f"stopped at --max-cost ${cap:g}" in capped.stderr
    assert 0 < stopped_at < len(texts)
    assert capped_summary["cost_capped"] is True
    # it spends most of the cap before it stops (issue 18: at least 90%); it may pass the cap
    # by what the items in flight spend beyond their estimates (CostMeter): a batch stage's
    # items are all in flight, priced from the items finished before; fresh-clone CI saw
    # 99.6% to 101.7% of the cap here, so 5% bounds a wrong estimate, not the rule's slack
    assert 0.9 * cap <= capped_summary["cost_usd"] <= 1.05 * cap
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert f"resuming: {stopped_at} items already done" in resumed.stderr
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert all(r["error"] is None and echoes_its_input(r) for r in done.values())
    # none twice: each item's prompt was answered once over both runs (and the probe's once)
    assert counts["batch_lines"] == len(texts) + len(others) and not counts["served_again"]
    summary = sidecar(out)
    assert summary["done"] == len(texts) and summary["cost_capped"] is False
    assert capped_summary["cost_usd"] < summary["cost_usd"] <= cap * 10


def test_a_dry_run_sends_no_request_writes_nothing_and_bounds_the_run(
    tmp_path: Path, prices: Path
) -> None:
    texts = paragraphs(200)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    out = tmp_path / "out" / "run.jsonl"  # its folder does not exist yet either
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        before = mock_stats(base_url)
        dry = cli(command(src, out, "--dry-run", "--rpm", "600", prices=prices), env, tmp_path,
                  "dry")  # fmt: skip
        untouched = mock_stats(base_url)
        assert not out.parent.exists()  # nothing opened, nothing written
        run = cli(command(src, out, "--concurrency", "8", prices=prices), env, tmp_path, "run")
        after = mock_stats(base_url)
    assert dry.code == 0, dry.stderr[-3000:]
    assert untouched == before
    assert after["requests"] == len(texts)  # the mock counts: it would have seen the dry run
    estimate = json.loads(dry.stdout)["estimate"]
    assert "none sent" in dry.stderr
    assert estimate["items"] == 200 and estimate["calls"] == 200
    assert estimate["wall_s"] == pytest.approx(20.0)  # 200 calls at 600 a minute
    assert run.code == 0, run.stderr[-3000:]
    measured = sidecar(out)
    assert measured["done"] == 200
    # an upper bound: input at 3.5 characters a token (the mock counts 4) and
    # every reply a whole max_tokens
    assert estimate["input_tokens"] >= measured["input_tokens"]
    assert estimate["output_tokens"] >= measured["output_tokens"]
    assert 0 < measured["cost_usd"] <= estimate["cost_usd"]


def test_records_and_summary_carry_costs_and_what_batch_and_cache_saved(
    tmp_path: Path, prices: Path
) -> None:
    texts = paragraphs(20)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    cache = tmp_path / "llm-cache.sqlite"
    with mock_server(MockConfig(batch_delay_s=0.5)) as base_url:
        env = environment(base_url)
        first = cli(command(src, first_out, "--batch-api", "--cache", str(cache), prices=prices),
                    env, tmp_path, "first")  # fmt: skip
        after_first = mock_stats(base_url)
        second = cli(command(src, second_out, "--batch-api", "--cache", str(cache),
                             prices=prices), env, tmp_path, "second")  # fmt: skip
        after_second = mock_stats(base_url)
    assert first.code == 0, first.stderr[-3000:]
    assert second.code == 0, second.stderr[-3000:]
    paid = records(first_out)
    assert len(paid) == 20
    for record in paid.values():
        usage = record["usage"]
        batch_price = (usage["input_tokens"] * PRICE["batch_input"]
                       + usage["output_tokens"] * PRICE["batch_output"]) / 1e6  # fmt: skip
        assert record["cost_usd"] == pytest.approx(batch_price, rel=1e-6)
        assert record["batch_saved_usd"] == pytest.approx(batch_price, rel=1e-6)  # half price
        assert record["cache_saved_usd"] == 0
    summary = sidecar(first_out)
    assert summary["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in paid.values()),
                                                rel=1e-3)  # fmt: skip
    assert summary["batch_saved_usd"] > 0 and summary["cache_saved_usd"] == 0
    # the second run: every call answered from the cache, none in a batch, none paid
    cached = records(second_out)
    assert {r["output"] for r in cached.values()} == {r["output"] for r in paid.values()}
    assert all(r["cost_usd"] == 0 for r in cached.values())
    assert after_second["batches_created"] == after_first["batches_created"] == 1
    assert after_second["batch_lines"] == after_first["batch_lines"] == 20
    again = sidecar(second_out)
    assert again["cache_hits"] == 20 and again["cost_usd"] == 0
    assert again["cache_saved_usd"] > 0
    assert again["cache_saved_usd"] == pytest.approx(summary["cost_usd"], rel=1e-3)


# --- a careless user's flags ---------------------------------------------------------------

# case: (flags, what the one line may name). --batch-api --embedded with -m is
# answered by the -m check ("-m gpt-4o-mini: no endpoint is configured ... drop -m").
BAD_ARGUMENTS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "batch-api-embedded": (["--batch-api", "--embedded"], ("--batch-api", "--embedded", "-m")),
    "batch-api-stream": (["--batch-api", "--stream"], ("--stream",)),
    "batch-api-ray": (["--batch-api", "--engine", "ray"], ("--engine ray",)),
    "batch-window-alone": (["--batch-window", "5"], ("--batch-window",)),
    "prices-missing": (["--prices", "missing.json"], ("missing.json",)),
    "prices-negative": (["--prices", "negative.json"], ("negative.json",)),
    "prices-not-json": (["--prices", "not-json.json"], ("not-json.json",)),
    "max-cost-negative": (["--max-cost", "-1"], ("--max-cost",)),
    "max-cost-nan": (["--max-cost", "nan"], ("--max-cost",)),
}
# --dry-run takes its own path through the checks (cli.py _dry_run); the same
# mistakes must be refused there too. The embedded case has its own test below.
DRY_CASES = [case for case in BAD_ARGUMENTS if case != "batch-api-embedded"]


def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path: Path) -> None:
    src = write_input(tmp_path / "paragraphs.jsonl", paragraphs(5))
    negative = {"models": {MODEL: {**PRICE, "output": -0.6}}}
    (tmp_path / "negative.json").write_text(json.dumps(negative))
    (tmp_path / "not-json.json").write_text("input: 0.15\noutput: 0.6\n")
    runs: list[tuple[str, bool]] = [(case, False) for case in BAD_ARGUMENTS]
    runs += [(case, True) for case in DRY_CASES]
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        before = mock_stats(base_url)
        procs = {}
        for case, dry in runs:  # all at once: each is a short process
            name = f"{case}-dry" if dry else case
            out = tmp_path / name / "out.jsonl"
            flags = BAD_ARGUMENTS[case][0] + (["--dry-run"] if dry else [])
            procs[(case, name)] = start(command(src, out, *flags), env, tmp_path, name)
        done = {key: finish(proc, tmp_path, key[1], limit=120) for key, proc in procs.items()}
        after = mock_stats(base_url)
    assert after == before  # no request of any kind
    wrong = []
    for (case, name), run in done.items():
        lines = run.stderr.splitlines()
        files = [str(p.relative_to(tmp_path)) for p in (tmp_path / name).rglob("*") if p.is_file()]
        named = bool(lines) and any(flag in lines[0] for flag in BAD_ARGUMENTS[case][1])
        if (run.code, run.stdout, len(lines), files, named) != (2, "", 1, [], True):
            wrong.append(f"{name}: exit {run.code}, files {files}, stdout {run.stdout[:200]!r}, "
                         f"stderr {run.stderr[-400:]!r}")  # fmt: skip
        elif not lines[0].startswith("pipelines"):
            wrong.append(f"{name}: not the command's own error line: {lines[0]!r}")
    assert not wrong, "\n".join(wrong)


def test_a_dry_run_refuses_the_batch_api_on_the_embedded_model(tmp_path: Path) -> None:
    src = write_input(tmp_path / "paragraphs.jsonl", paragraphs(5))
    with mock_server(MockConfig()) as base_url:
        run = cli(command(src, tmp_path / "out.jsonl", "--batch-api", "--embedded", "--dry-run"),
                  environment(base_url), tmp_path, "dry")  # fmt: skip
    assert (run.code, run.stdout, len(run.stderr.splitlines())) == (2, "", 1), run.stderr


def test_the_batch_flags_are_accepted_with_batch_api(tmp_path: Path, prices: Path) -> None:
    texts = paragraphs(5)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    out = tmp_path / "out.jsonl"
    flags = ["--batch-api", "--batch-window", "30", "--batch-retry", "request",
             "--max-enqueued-tokens", "1000000"]  # fmt: skip
    with mock_server(MockConfig(batch_delay_s=0.2)) as base_url:
        run = cli(command(src, out, *flags, prices=prices), environment(base_url), tmp_path, "run")
        counts = mock_stats(base_url)
    assert run.code == 0, run.stderr[-3000:]
    assert counts["batches_created"] == 1 and counts["batch_lines"] == len(texts)
    assert sorted(r["input"] for r in records(out).values()) == sorted(texts)


def test_max_cost_for_a_model_without_a_price_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    src = write_input(tmp_path / "paragraphs.jsonl", paragraphs(5))
    out = tmp_path / "out" / "run.jsonl"
    cmd = command(src, out, "--max-cost", "1")
    cmd[cmd.index(MODEL)] = "a-model-without-a-price"
    with mock_server(MockConfig()) as base_url:
        run = cli(cmd, environment(base_url), tmp_path, "run")
        counts = mock_stats(base_url)
    assert run.code == 2 and "--max-cost" in run.stderr, run.stderr[-3000:]
    assert counts.get("requests", 0) == 0
    assert not out.parent.exists() or not any(out.parent.iterdir())
