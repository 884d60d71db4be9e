"""`pipelines news` end to end: the local news server's feeds and broken cases, on the embedded model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.news_server import BROKEN_CASES, spawn, write_sources
from lc_async_pipelines.news import NewsReport

ROOT = Path(__file__).resolve().parents[2]
ARTICLES = 4  # the 50-article figures are in the README; this proves the plumbing


def _env(embedded_server):
    env = {**os.environ, "PIPELINES_EMBEDDED_URL": embedded_server.base_url}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL"):
        env.pop(name, None)
    return env


def _news(args, env):
    return subprocess.run(
        [sys.executable, "-m", "lc_async_pipelines", "news", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def news_site(data_dir):
    with spawn("--articles", str(ARTICLES), "--slow-s", "30") as base:
        yield base


def test_news_writes_one_record_per_article_and_per_broken_case(
    embedded_server, news_site, tmp_path
):
    sources = write_sources(news_site, tmp_path / "feeds.txt")
    out = tmp_path / "news.jsonl"
    args = ["--sources", str(sources), "--output", str(out), "--fetch-timeout", "2"]
    first = _news([*args, "--concurrency", "4"], _env(embedded_server))
    assert first.returncode == 1, first.stderr  # the broken cases failed, as they must
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ok = [r for r in records if r["error"] is None]
    failed = [r for r in records if r["error"] is not None]
    assert len(ok) == ARTICLES
    for record in ok:
        report = NewsReport.model_validate(record["output"])
        assert report.analysis.tone in ("negative", "neutral", "positive")
        assert report.author and report.published and report.title
    # one error record per broken case, naming its URL and the cause
    assert len(failed) == len(BROKEN_CASES)
    for path, cause in BROKEN_CASES.items():
        (match,) = [r for r in failed if r["input"] == news_site + path]
        assert match["error"]["type"] == "FetchError"
        assert news_site + path in match["error"]["message"]
        assert cause in match["error"]["message"]
    # each record was shown as it completed: one line per record
    lines = [line for line in first.stdout.splitlines() if line[:1] in "✓✗"]
    assert len(lines) == len(records)

    again = _news(args, _env(embedded_server))
    assert f"resuming: {ARTICLES} records already done" in again.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == ARTICLES + len(BROKEN_CASES)  # failures ran again, nothing twice
    assert len({r["id"] for r in records}) == len(records)
    assert [r["output"] for r in records if r["error"] is None] == [r["output"] for r in ok]


def test_news_refuses_bad_arguments_with_exit_2(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("http://127.0.0.1:1/feed.rss\n")
    bad = tmp_path / "feeds.txt"
    bad.write_text("http://127.0.0.1:1/feed.rss\nnot a url\n")
    cases = [
        (["--sources", str(tmp_path / "missing.txt")], "no such file"),
        (["--sources", str(tmp_path)], "is a folder"),
        (["--sources", str(bad), "--output", str(tmp_path / "o.jsonl")], "line 2"),
        (["--sources", str(bad), "--deadline", "-1"], "--deadline"),
        (["--sources", str(good), "--tools", "agent", "--embedded"], "cannot call tools"),
    ]
    for args, expected in cases:
        result = _news(args, {**os.environ})
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
