"""Who shares a Redis budget, on a real redis-server started here (issue 22 points 5 and 7).

Two runs at --rpm 600 and --rpm 60 against one endpoint used to share one key
(derived from endpoint and model) and both went at about the slower pace, with
no word. Now the default key covers the limits too; runs that do share a key
see each other (``shared_use``) and say so. A Redis password can come from
``$REDIS_PASSWORD`` instead of the URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from benchmarks import mock_server, redis_server
from lc_async_pipelines.cli._shared_limits import share_note
from lc_async_pipelines.errors import BudgetUnavailable
from lc_async_pipelines.runner.limits import open_budget

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def redis_url():
    with redis_server.spawn() as url:
        yield url


def budget_keys(url: str) -> set[str]:
    client = redis.Redis.from_url(url)
    try:
        names = {k.decode() for k in client.scan_iter("*budget*:rpm")}
    finally:
        client.close()
    return {n.split("}", 1)[0].lstrip("{") for n in names}


async def test_runs_at_other_limits_get_their_own_budget_by_default(redis_url):
    fast = open_budget(redis_url, base_url=ENDPOINT, model="m", rpm=600)
    slow = open_budget(redis_url, base_url=ENDPOINT, model="m", rpm=60)
    twin = open_budget(redis_url, base_url=ENDPOINT + "/", model="m", rpm=600.0)
    assert fast.key != slow.key and fast.key == twin.key
    async with fast, slow, twin:
        for budget in (fast, slow, twin):
            await budget.redis_store.reserve(1)
        fast_use, slow_use = await fast.shared_use(), await slow.shared_use()
        twin_use = await twin.shared_use()
    assert {fast.key, slow.key} <= budget_keys(redis_url)  # two schedules, not one
    assert slow_use.runs == 1 and share_note(slow_use, 60, None) is None
    # the same limits share, and the progress line says what each gets
    assert fast_use.runs in (1, 2) and twin_use.runs == 2 and twin_use.limits == []
    assert share_note(twin_use, 600, None) == ("shared budget: 2 runs, ~300 rpm each")


async def test_runs_at_other_limits_on_one_named_key_see_who_holds_them_back(redis_url):
    fast = open_budget(redis_url, key="named", rpm=600)
    slow = open_budget(redis_url, key="named", rpm=60, tpm=10_000)
    async with fast, slow:
        await slow.shared_use()
        fast_use, slow_use = await fast.shared_use(), await slow.shared_use()
    assert fast_use.runs == 2 and fast_use.limits == [(60, 10_000)]
    note = share_note(fast_use, 600, None)
    assert note == "shared budget: held by a run at --rpm 60 --tpm 10000"
    # the slower run is not held back by a faster one: nothing to explain on its line
    assert slow_use.limits == [(600.0, None)] and share_note(slow_use, 60, 10_000) is None


async def test_the_redis_password_can_come_from_the_environment(monkeypatch):
    with redis_server.spawn() as url:
        client = redis.Redis.from_url(url)
        client.config_set("requirepass", "env-pass-W7x9")
        client.close()
        budget = open_budget(url, key="with-password", rpm=600)
        with pytest.raises(BudgetUnavailable) as refused:
            await budget.connect()
        assert "env-pass-W7x9" not in str(refused.value)
        assert "set REDIS_PASSWORD" in str(refused.value)
        monkeypatch.setenv("REDIS_PASSWORD", "env-pass-W7x9")
        async with open_budget(url, key="with-password", rpm=600) as budget:
            assert (await budget.shared_use()).runs == 1


def cli_run(base: str, redis_url: str, rows: Path, rpm: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_BASE_URL": base + "/v1", "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    argv = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "-m", "mock"]
    argv += ["--input", str(rows), "--output", str(rows.with_suffix(f".{rpm}.jsonl"))]
    argv += ["--rpm", str(rpm), "--budget", redis_url, "--concurrency", "8", *extra]
    return subprocess.Popen(argv, cwd=rows.parent, env=env, stderr=subprocess.PIPE, text=True)


def both(procs: list[subprocess.Popen]) -> list[str]:
    errs = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        errs.append(err)
    return errs


def test_two_cli_runs_at_600_and_60_rpm_are_not_tied_unless_they_name_one_key(redis_url, tmp_path):
    fast_rows, slow_rows = tmp_path / "fast.txt", tmp_path / "slow.txt"
    fast_rows.write_text("".join(f"fast topic {n}\n" for n in range(100)))
    slow_rows.write_text("".join(f"slow topic {n}\n" for n in range(15)))
    with mock_server.spawn() as base:
        errs = both(
            [cli_run(base, redis_url, fast_rows, 600), cli_run(base, redis_url, slow_rows, 60)]
        )
        assert not any("shared budget" in e or "warning" in e for e in errs), errs
        # named alike, they share one schedule: said once on each run that the other slows
        extra = ("--restart", "--budget-key", "one-key")
        errs = both(
            [
                cli_run(base, redis_url, fast_rows, 600, *extra),
                cli_run(base, redis_url, slow_rows, 60, *extra),
            ]
        )
    fast_err = errs[0]
    assert fast_err.count("warning: budget one-key is also used by runs at --rpm 60") == 1
    assert "pipelines: shared budget: held by a run at --rpm 60" in fast_err
    assert "held by" not in errs[1]
