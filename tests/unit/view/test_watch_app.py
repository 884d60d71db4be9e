"""One run followed (counts, status, rates, a replaced file) and the page's app behind the guards."""

import base64
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path

import httpx
import pytest

from lc_async_pipelines.runner.records import RunManifest, manifest_path, summary_path
from lc_async_pipelines.runner.records.manifest import manifest_text
from lc_async_pipelines.service import ServiceSettings
from lc_async_pipelines.view import RunWatch, create_view_app
from tests.unit.view.test_stats_index import FAIL, record, write


def manifest(output: Path, **kw) -> None:
    m = RunManifest.new(pipeline="story", fingerprint="f" * 64, model="fake", input=output, **kw)
    manifest_path(output).write_text(manifest_text(m))


def watched(output: Path) -> RunWatch:
    watch = RunWatch(output)
    while watch.step():
        pass
    watch.refresh()
    return watch


def test_state_counts_progress_cost_and_limits(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(i, error=FAIL if i == 2 else None) for i in range(4)])
    manifest(out, items=10, limits={"rpm": 600, "tpm": None})
    state = watched(out).state()
    assert state["progress"]["records"] == 4 and state["progress"]["failed"] == 1
    assert state["progress"]["items"] == 10 and state["progress"]["fraction"] == 0.4
    assert state["rate"]["rpm_limit"] == 600 and state["rate"]["tpm_limit"] is None
    assert state["cost"]["so_far_usd"] == pytest.approx(0.004)
    assert state["cost"]["projected_usd"] == pytest.approx(0.01)
    assert state["run"]["pipeline"] == "story" and state["run"]["status"] == "stopped"
    assert state["eta_s"] is None  # not running


def test_status_running_while_the_lock_is_held_and_finished_after_the_summary(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(0)])
    lock = out.with_name(out.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        state = watched(out).state()
        assert state["run"]["status"] == "running" and state["run"]["pid"] == "4242"
    finally:
        os.close(fd)
    summary_path(out).write_text(json.dumps({"done": 1, "total_wall_s": 30.0}))
    state = watched(out).state()
    assert state["run"]["status"] == "finished"
    assert state["rate"]["items_per_min"] == pytest.approx(2.0)  # 1 record in 30 s
    assert state["rate"]["source"] == "run"


def test_growth_a_partial_line_and_a_replaced_file(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(i) for i in range(3)])
    watch = watched(out)
    with out.open("a") as fh:
        fh.write(json.dumps(record(3)) + "\n" + json.dumps(record(4))[:20])
    watch.step()
    state = watch.state()
    assert state["progress"]["records"] == 4 and state["progress"]["partial_bytes"] == 20
    write(tmp_path / "new.jsonl", [record(9)])
    os.replace(tmp_path / "new.jsonl", out)
    watch.step()
    state = watch.state()
    assert state["progress"]["records"] == 1 and state["run"]["replaced"] == 1
    assert watch.page(1, 10, failed_only=False)["rows"][0]["id"] == "i9"


def test_corrupt_lines_are_counted_not_fatal(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(record(0)) + "\n{oops\n" + json.dumps(record(1)) + "\n")
    state = watched(out).state()
    assert state["progress"]["records"] == 2
    assert state["stats"]["unreadable"] == {"count": 1, "last": [[2, "not JSON"]]}


def test_the_view_writes_nothing(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(0)])
    manifest(out)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    watch = watched(out)
    watch.state()
    watch.search("topic", 0, 10, failed_only=False)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()} == before


async def client(app, host="127.0.0.1"):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_app_serves_the_page_state_pages_and_search_behind_the_headers(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(i, error=FAIL if i % 3 == 0 else None) for i in range(30)])
    app = create_view_app(out, settings=ServiceSettings())
    watch = app.state.watch
    while watch.step():
        pass
    async with await client(app) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "<script>" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        script = re.search(r"<script>(.*?)</script>", page.text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp  # the page served is the one the policy allows
        assert 'src="http' not in page.text and 'href="http' not in page.text  # no CDN
        state = (await http.get("/api/state")).json()
        assert state["progress"]["records"] == 30 and state["progress"]["failed"] == 10
        rows = (
            await http.get("/api/records", params={"page": 2, "size": 4, "failed": "true"})
        ).json()
        assert rows["total"] == 10 and rows["pages"] == 3
        assert [r["id"] for r in rows["rows"]] == ["i12", "i15", "i18", "i21"]
        found = (await http.get("/api/search", params={"q": "TOPIC 2", "size": 50})).json()
        assert [r["id"] for r in found["rows"]] == ["i2", *[f"i{i}" for i in range(20, 30)]]
        assert found["next"] is None
        assert (await http.get("/api/records", params={"size": 1000})).status_code == 422
    async with await client(app, host="evil.example") as http:
        assert (await http.get("/api/state")).status_code == 400  # loopback names only


async def test_with_a_token_everything_but_the_page_needs_it(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(0)])
    app = create_view_app(out, settings=ServiceSettings(api_token="s3cret-token-value"))
    async with await client(app, host="view.example") as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/healthz")).json()["token_required"] is True
        assert (await http.get("/api/state")).status_code == 401
        ok = await http.get("/api/state", headers={"Authorization": "Bearer s3cret-token-value"})
        assert ok.status_code == 200


def test_a_summary_with_fewer_records_than_items_is_an_interrupted_run(tmp_path):
    out = tmp_path / "out.jsonl"
    write(out, [record(0), record(1)])
    manifest(out, items=5)
    summary_path(out).write_text(json.dumps({"done": 2, "total_wall_s": 3.0}))
    assert watched(out).state()["run"]["status"] == "stopped"
    write(out, [record(i) for i in range(5)])
    summary_path(out).write_text(json.dumps({"done": 5, "total_wall_s": 9.0}))
    assert watched(out).state()["run"]["status"] == "finished"
