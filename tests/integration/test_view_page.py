"""``pipelines view`` in a real browser (Debian's chromium, Playwright) while ``pipelines run`` writes.

The run goes to the benchmark mock with injected 429s and 500s, so some items
retry and some fail; the page's counts must grow while the run writes and, at
the end, equal what the records file holds; the failed-only filter, the search
and the paging must show the records the file holds.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lc_async_pipelines.cli.exit_codes import ExitCode
from tests.integration._browser import needs_chromium, watch
from tests.integration.mock import MockConfig, mock_server
from tests.integration.test_cli_kill_resume import environment, topics

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "view.png"
ITEMS = 120

pytestmark = needs_chromium


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _start_view(out: Path, env: dict, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """Start ``pipelines view OUTPUT --port 0``; return it and the URL it printed."""
    cmd = [sys.executable, "-m", "lc_async_pipelines", "view", str(out), "--port", "0"]
    err = (tmp_path / "view.stderr").open("w")
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True
    )
    err.close()
    line = proc.stdout.readline()
    match = re.search(r"at (http://\S+/) ", line)
    assert match, (line, (tmp_path / "view.stderr").read_text())
    return proc, match.group(1)


def _start_run(src: Path, out: Path, env: dict, tmp_path: Path) -> subprocess.Popen:
    """Start ``pipelines run`` on the mock; return once it has created its records file."""
    cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story", "--input", str(src),
           "--output", str(out), "--max-words", "20", "--concurrency", "2",
           "--max-retries", "1", "--rpm", "600"]  # fmt: skip
    err = (tmp_path / "run.stderr").open("w")
    run = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    for _ in range(600):  # the run creates its records file once its checks pass
        if out.exists() or run.poll() is not None:
            break
        time.sleep(0.05)
    assert out.exists(), (tmp_path / "run.stderr").read_text()
    return run


async def _count(page, selector: str) -> int:
    return int((await page.inner_text(selector)).replace(",", ""))


async def test_view_follows_a_live_run_and_matches_its_records(browser, tmp_path):
    src = tmp_path / "topics.txt"
    src.write_text("\n".join(topics(ITEMS)) + "\n")
    out = tmp_path / "out.jsonl"
    config = MockConfig(latency_s=0.15, fault_rate=0.3, faults=("429", "500"), retry_after_s=0.05)
    with mock_server(config) as base_url:
        env = environment(base_url)
        run = _start_run(src, out, env, tmp_path)
        view = None
        try:
            view, url = _start_view(out, env, tmp_path)
            page = await browser.new_page(viewport={"width": 1280, "height": 1400})
            seen = watch(page, url.rstrip("/"))
            await page.goto(url)
            await page.wait_for_function(
                "() => Number(document.getElementById('records-count').textContent.replace(/,/g, '')) > 0",
                timeout=120_000,
            )
            first = await _count(page, "#records-count")
            assert await page.inner_text("#status") != "finished"
            # the count grows while the run writes (no timing asserted: whenever it does)
            await page.wait_for_function(
                f"() => Number(document.getElementById('records-count').textContent.replace(/,/g, '')) > {first}",
                timeout=120_000,
            )
            assert run.poll() is None or len(_records(out)) > first
            assert await page.inner_text("#items-count") == f" / {ITEMS}"
            if os.environ.get("UPDATE_SCREENSHOT"):
                SCREENSHOT.parent.mkdir(exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT), full_page=True)
            code = run.wait(300)  # some items fail by design: ITEMS_FAILED
            assert code in (ExitCode.OK, ExitCode.ITEMS_FAILED), (
                tmp_path / "run.stderr"
            ).read_text()
            await page.wait_for_function(
                "() => document.getElementById('status').dataset.status === 'finished'",
                timeout=60_000,
            )
            await page.wait_for_function(
                f"() => document.getElementById('records-count').textContent === '{ITEMS}'",
                timeout=60_000,
            )
            await _check_counts_and_table(page, _records(out))
        finally:
            if run.poll() is None:
                run.kill()
            if view is not None:
                view.terminate()
                view.wait(30)
    assert seen["outside"] == []
    assert seen["violations"] == []


async def _check_counts_and_table(page, records: list[dict]) -> None:
    failed = [r for r in records if r["error"] is not None]
    assert failed, "the mock's faults should fail some items"
    assert await _count(page, "#done-count") == len(records) - len(failed)
    assert await _count(page, "#failed-count") == len(failed)
    retries = sum(max(0, len(r["history"]) - (r["error"] is not None)) for r in records)
    assert await _count(page, "#retries-count") == retries
    assert await _count(page, "#throttled-count") == sum(r["throttled"] for r in records)
    classes = await page.locator("#failures tr[data-kind]").evaluate_all(
        "rows => rows.map(r => r.dataset.kind)"
    )
    assert sorted(classes) == sorted({r["error"]["type"] for r in failed})
    # paging: page 1 holds the first 25 records, page 2 the next
    rows = page.locator("#rows tr")
    await page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 25")
    assert await rows.first.get_attribute("data-n") == "1"
    await page.click("#next")
    await page.wait_for_function("() => document.querySelector('#rows tr').dataset.n === '26'")
    assert await rows.nth(24).get_attribute("data-n") == "50"
    # failed only: exactly the failed records, in file order
    await page.check("#failed-only")
    await page.wait_for_function(
        f"() => document.getElementById('page-info').dataset.total === '{len(failed)}'"
    )
    ids = await rows.locator("td:nth-child(2)").all_inner_texts()
    assert ids == [r["id"] for r in failed][:25]
    assert await page.locator("#rows tr:not(.failed)").count() == 0
    await page.uncheck("#failed-only")
    # search: one topic's words find that record only
    target = records[len(records) // 2]
    await page.fill("#search", target["input"])
    await page.dispatch_event("#search", "change")
    await page.wait_for_function(
        f"() => [...document.querySelectorAll('#rows tr')].map(r => r.children[1].textContent).join() === '{target['id']}'"
    )
