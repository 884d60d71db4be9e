"""The Batch API and costs end to end, against the benchmark mock on loopback.

Until ``pipelines run`` has the flags, a run is driven by this module itself
(``python -m tests.integration.test_batch_api ...``, see :func:`main`): the
library's pieces as the command line wires them (``open_run``,
``BatchSession``, ``CostMeter``, ``run_items``, ``write_records``), in a
process of its own so that it can be killed with ``kill -9``. Inputs are real
text from ``../shared/data``: news paragraphs, and Project Gutenberg stories
long enough for map-reduce.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
KEY = "sk-batch-SECRET-0123456789"
# gpt-4o-mini's figures for the mock's model
PRICES = {"source": "test", "as_of": "2026-01-01", "models": {"mock": {
    "input": 0.15, "cached_input": 0.075, "output": 0.6, "batch_input": 0.075,
    "batch_output": 0.3}}}  # fmt: skip


def paragraphs(n: int) -> list[str]:
    rows = json.loads((DATA / "news_summaries" / "writer_summaries.json").read_text())
    seen: dict[str, None] = {}
    for article in dict.fromkeys(r["article"] for r in rows):
        for paragraph in article.split("\n"):
            if len(paragraph.split()) >= 15:
                seen.setdefault(paragraph.strip())
    assert len(seen) >= n
    return list(seen)[:n]


def stories(n: int) -> list[str]:
    with (DATA / "long_stories" / "squality_test.jsonl").open() as fh:
        documents = dict.fromkeys(json.loads(line)["document"] for line in fh)
    return list(documents)[:n]


def write_input(path: Path, texts: list[str]) -> Path:
    lines = (json.dumps({"id": f"doc{i:04d}", "text": t}) for i, t in enumerate(texts))
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for name in ("PIPELINES_EMBEDDED_URL", "PIPELINES_EMBEDDED"):
        env.pop(name, None)
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=KEY, PIPELINES_MODEL="mock",
               NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT))  # fmt: skip
    return env


def start(env: dict[str, str], tmp_path: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    err = (tmp_path / f"{name}.stderr").open("w")
    out = (tmp_path / f"{name}.stdout").open("w")
    cmd = [sys.executable, "-m", "tests.integration.test_batch_api", *args]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
    err.close()
    out.close()
    return proc


def finish(proc: subprocess.Popen[bytes], tmp_path: Path, name: str, limit: float = 300) -> dict:
    code = proc.wait(limit)
    stdout = (tmp_path / f"{name}.stdout").read_text()
    stderr = (tmp_path / f"{name}.stderr").read_text()
    assert stdout.strip(), stderr[-3000:]
    return {"code": code, **json.loads(stdout.strip().splitlines()[-1]), "stderr": stderr}


def mock_stats(base_url: str) -> dict:
    return httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=5, trust_env=False).json()


def records(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(by_id) == len(lines)  # none twice
    return by_id


def kill_when(proc, condition, limit: float = 120) -> None:
    """SIGKILL ``proc`` once ``condition()`` holds; fail if it ends first."""
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
def prices(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    return path


def test_a_thousand_summaries_in_one_batch_match_the_per_request_mode(tmp_path, prices):
    from tests.integration.mock import MockConfig, mock_server

    texts = paragraphs(1000)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    with mock_server(MockConfig(batch_delay_s=1.0)) as base_url:
        env = environment(base_url)
        single = finish(start(env, tmp_path, "single", "--input", str(src), "--output",
                              str(tmp_path / "single.jsonl"), "--prices", str(prices)),
                        tmp_path, "single")  # fmt: skip
        assert mock_stats(base_url).get("batches_created", 0) == 0
        batched = finish(start(env, tmp_path, "batch", "--input", str(src), "--output",
                               str(tmp_path / "batch.jsonl"), "--prices", str(prices),
                               "--batch-api"), tmp_path, "batch")  # fmt: skip
        counts = mock_stats(base_url)
    assert single["code"] == batched["code"] == 0, batched["stderr"][-3000:]
    assert counts["batches_created"] == 1 and counts["batch_lines"] == 1000
    one, many = records(tmp_path / "single.jsonl"), records(tmp_path / "batch.jsonl")
    assert len(many) == 1000 and set(many) == set(one)
    for key, record in many.items():
        assert record["error"] is None and record["output"] == one[key]["output"]
        assert record["output"].startswith("echo: " + " ".join(record["input"].split()[:5]))
        assert record["usage"] == one[key]["usage"]
        # the batch price is half: the record says so
        assert record["cost_usd"] == pytest.approx(one[key]["cost_usd"] / 2, rel=1e-6)
        assert record["batch_saved_usd"] == pytest.approx(record["cost_usd"], rel=1e-6)
    summary = batched["summary"]
    assert summary["done"] == 1000
    assert summary["cost_usd"] == pytest.approx(single["summary"]["cost_usd"] / 2, rel=1e-4)
    assert summary["session"]["batches_created"] == 1
    assert KEY not in (tmp_path / "batch.jsonl.batches.json").read_text()


def test_a_map_reduce_over_long_stories_is_two_batch_stages(tmp_path, prices):
    from tests.integration.mock import MockConfig, mock_server

    texts = stories(8)
    src = write_input(tmp_path / "stories.jsonl", texts)
    with mock_server(MockConfig(batch_delay_s=0.5)) as base_url:
        run = finish(start(environment(base_url), tmp_path, "run", "--input", str(src),
                           "--output", str(tmp_path / "out.jsonl"), "--batch-api"),
                     tmp_path, "run")  # fmt: skip
        counts = mock_stats(base_url)
    assert run["code"] == 0, run["stderr"][-3000:]
    done = records(tmp_path / "out.jsonl")
    assert len(done) == 8 and all(r["error"] is None for r in done.values())
    assert all(r["calls"] >= 4 for r in done.values())  # map calls, then the combine
    assert all(r["output"].startswith("echo: These are summaries") for r in done.values())
    assert counts["batches_created"] == 2
    assert counts["batch_lines"] == sum(r["calls"] for r in done.values())


def test_kill_9_while_batches_run_then_resume_creates_one_batch_per_stage(tmp_path, prices):
    from tests.integration.mock import MockConfig, mock_server

    texts = stories(6)
    src = write_input(tmp_path / "stories.jsonl", texts)
    out = tmp_path / "out.jsonl"
    args = ("--input", str(src), "--output", str(out), "--batch-api", "--prices", str(prices))
    with mock_server(MockConfig(batch_delay_s=2.0)) as base_url:
        env = environment(base_url)
        # killed while the map stage's batch is in progress
        first = start(env, tmp_path, "s1", *args)
        kill_when(first, lambda: mock_stats(base_url).get("batches_created", 0) == 1)
        assert not out.exists() or out.read_text() == ""
        # resumed: waits on that batch, then killed while the combine stage's runs
        second = start(env, tmp_path, "s2", *args)
        kill_when(second, lambda: mock_stats(base_url).get("batches_created", 0) == 2)
        last = finish(start(env, tmp_path, "s3", *args), tmp_path, "s3")
        counts = mock_stats(base_url)
    assert last["code"] == 0, last["stderr"][-3000:]
    assert counts["batches_created"] == 2  # one per stage, whatever the kills
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert all(r["error"] is None and r["output"].startswith("echo: These are summaries")
               for r in done.values())  # fmt: skip
    # every line was answered once: nothing paid twice
    assert counts["batch_lines"] == sum(r["calls"] for r in done.values())
    session = last["summary"]["session"]
    assert session["batches_created"] == 0 and session["batches_resumed"] == 2
    state = json.loads((tmp_path / "out.jsonl.batches.json").read_text())
    assert [b["status"] for b in state["batches"]] == ["completed", "completed"]
    for name in ("s1", "s2", "s3"):
        assert KEY not in (tmp_path / f"{name}.stderr").read_text()


def test_max_cost_stops_at_the_cap_and_a_resume_finishes(tmp_path, prices):
    from tests.integration.mock import MockConfig, mock_server

    texts = paragraphs(200)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    out = tmp_path / "out.jsonl"
    args = ("--input", str(src), "--output", str(out), "--prices", str(prices), "--batch-api")
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        dry = finish(start(env, tmp_path, "dry", *args, "--dry-run"), tmp_path, "dry")
        cap = round(dry["estimate"]["cost_usd"] / 3, 6)  # about a third of the run
        capped = finish(start(env, tmp_path, "capped", *args, "--max-cost", str(cap)),
                        tmp_path, "capped")  # fmt: skip
        stopped_at = len(records(out))
        resumed = finish(start(env, tmp_path, "resumed", *args, "--max-cost", str(cap * 10)),
                         tmp_path, "resumed")  # fmt: skip
    assert capped["code"] == 3 and "--max-cost" in capped["stderr"]
    assert 0 < stopped_at < len(texts)
    assert capped["summary"]["cost_usd"] <= cap
    assert resumed["code"] == 0, resumed["stderr"][-3000:]
    done = records(out)
    assert sorted(r["input"] for r in done.values()) == sorted(texts)
    assert resumed["summary"]["cost_usd"] <= cap * 10


def test_a_dry_run_sends_no_request_and_its_estimate_bounds_the_run(tmp_path, prices):
    from tests.integration.mock import MockConfig, mock_server

    texts = paragraphs(300)
    src = write_input(tmp_path / "paragraphs.jsonl", texts)
    args = ("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--prices", str(prices))
    with mock_server(MockConfig()) as base_url:
        env = environment(base_url)
        dry = finish(start(env, tmp_path, "dry", *args, "--dry-run", "--rpm", "600"),
                     tmp_path, "dry")  # fmt: skip
        untouched = mock_stats(base_url)
        assert not (tmp_path / "out.jsonl").exists()  # nothing opened, nothing written
        run = finish(start(env, tmp_path, "run", *args), tmp_path, "run")
    assert dry["code"] == 0
    assert not {"requests", "files_uploaded", "batches_created"} & set(untouched)
    estimate = dry["estimate"]
    assert estimate["items"] == 300 and estimate["calls"] == 300
    assert estimate["wall_s"] == pytest.approx(30.0)  # 300 calls at 600 a minute
    measured = run["summary"]
    assert measured["done"] == 300
    # an upper bound: input at 3.5 characters a token (the mock counts 4) and
    # every reply a whole max_tokens
    assert estimate["input_tokens"] >= measured["input_tokens"]
    assert estimate["output_tokens"] >= measured["output_tokens"]
    assert measured["cost_usd"] <= estimate["cost_usd"]


# --- the driver: the library wired as `pipelines run` will wire it ----------------------


async def drive(args: argparse.Namespace) -> int:
    from langchain_core.runnables import RunnableConfig

    from lc_async_pipelines import build_auto_summary_chain
    from lc_async_pipelines.models import ModelSettings, chat_model_session
    from lc_async_pipelines.runner import (
        RateBudget,
        RetryPolicy,
        RunOptions,
        read_items,
        run_items,
        with_budget,
        write_records,
    )
    from lc_async_pipelines.runner.batch_api import BatchOptions, BatchSession, batches_path
    from lc_async_pipelines.runner.costs import CostMeter, estimate_run, load_prices
    from lc_async_pipelines.runner.records import RunManifest, chain_fingerprint, open_run

    settings = ModelSettings.from_env()
    prices = load_prices(args.prices)
    items = read_items(Path(args.input))
    model_name = str(settings.model_name)
    max_tokens = settings.max_tokens or 512
    if args.dry_run:
        estimate = await estimate_run(
            build_auto_summary_chain, items, model=model_name, prices=prices,
            batch=args.batch_api, max_tokens=max_tokens, rpm=args.rpm,
        )  # fmt: skip
        print(estimate.describe(), file=sys.stderr)
        print(json.dumps({"estimate": estimate.to_dict()}))
        return 0
    manifest = RunManifest.new(
        pipeline="summary", fingerprint=chain_fingerprint({"target": "summary"}),
        model=model_name, input=Path(args.input),
    )  # fmt: skip
    retry = RetryPolicy(max_retries=3, initial=0.05, max_wait=0.5, jitter=0.05)
    with open_run(Path(args.output), manifest, restart=False) as run:
        meter = CostMeter(
            prices, model=model_name, batch=args.batch_api, max_cost_usd=args.max_cost,
            prior_usd=run.prior.cost_usd, output_tokens=max_tokens,
        )  # fmt: skip
        async with chat_model_session(settings) as chat_model, contextlib.AsyncExitStack() as stack:
            model, batch = chat_model, None
            if args.batch_api:
                options = BatchOptions(
                    state_path=batches_path(run.output), retry=args.batch_retry,
                    settle_s=0.5, poll_initial_s=0.1, poll_max_s=0.5,
                )  # fmt: skip
                batch = await stack.enter_async_context(BatchSession(chat_model, options))
                model = batch.chat_model
            # Batch mode: every item in flight, no RPM/TPM/in-flight bound, and no
            # max_concurrency, so a stage holds every call it can.
            budget = RateBudget() if batch else RateBudget(max_in_flight=args.concurrency)
            llm = with_budget(model, budget, retry=retry)
            run_options = RunOptions(
                concurrency=50_000 if batch else args.concurrency, retry=retry,
                skip=run.done_ids, costs=meter,
            )  # fmt: skip
            config = RunnableConfig() if batch else RunnableConfig(max_concurrency=args.concurrency)
            records = run_items(build_auto_summary_chain(llm), items, run_options, config=config)
            summary = await write_records(records, run.out)
            extra: dict[str, object] = {"cost_capped": meter.capped}
            if batch is not None:
                extra.update(batch.stats.as_dict())
        totals = run.finish(summary, extra)
    if meter.capped:
        print(
            f"stopped at --max-cost {args.max_cost}: spent ${meter.spent_usd:.6f}; "
            "run again with a higher --max-cost to go on",
            file=sys.stderr,
        )
    print(json.dumps({"summary": totals}))
    return 3 if meter.capped else 0 if summary.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="drive a summary run (tests only)")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--prices")
    parser.add_argument("--batch-api", action="store_true")
    parser.add_argument("--batch-retry", choices=("batch", "request"), default="batch")
    parser.add_argument("--max-cost", type=float)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--concurrency", type=int, default=32)
    return asyncio.run(drive(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
