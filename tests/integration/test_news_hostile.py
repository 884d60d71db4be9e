"""Hostile pages against `pipelines news`: pages that jam the extractor, and decompression bombs.

Each input is built here and served by a local server the test starts; the
model is the benchmark mock (no article reaches it: every page fails first).
"""

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news import Fetcher, FetchLimits
from tests.integration.mock import MockConfig, mock_server

ROOT = Path(__file__).resolve().parents[2]
# 0.8 MB of unclosed <p> tags, and one tag with 200,000 attributes: each took
# trafilatura over 20 s (quadratic), in a thread nothing could stop
PARAGRAPHS = b"<html><body>" + b"<p>" * 266_000
ATTRIBUTES = b"<html><body><div " + b" ".join(b"a%d=1" % i for i in range(200_000)) + b">x</div>"


def bomb(encoding: str, inflated: int = 1 << 30) -> bytes:
    """About 1 MB of gzip or deflate (zlib) inflating to ``inflated`` zero bytes."""
    piece = bytes(1 << 24)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)
    # after a full flush the packer starts afresh: every further piece packs the same
    again = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)
    blocks = first + again * (inflated // len(piece) - 1) + packer.flush()
    if encoding == "gzip":
        crc = 0
        for _ in range(inflated // len(piece)):
            crc = zlib.crc32(piece, crc)
        trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + blocks + trailer
    adler = 1
    for _ in range(inflated // len(piece)):
        adler = zlib.adler32(piece, adler)
    return b"\x78\xda" + blocks + struct.pack(">I", adler)


@contextmanager
def serve(pages: dict[str, tuple[bytes, dict[str, str]]]) -> Iterator[str]:
    """Serve ``{path: (body, headers)}`` on 127.0.0.1; ``/feed.rss`` lists every page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path == "/feed.rss":
                items = "".join(f"<item><link>{base}{path}</link></item>" for path in pages)
                rss = f"<?xml version='1.0'?><rss version='2.0'><channel>{items}</channel></rss>"
                body, headers = rss.encode(), {"Content-Type": "application/rss+xml"}
            else:
                body, headers = pages[self.path]
            self.send_response(200)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except ConnectionError:
                pass  # the fetcher stopped reading at its cap

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_sixteen_bombs_at_once_cost_about_the_cap_each(encoding):
    cap, at_once = 2_000_000, 16  # the cap above the 1 MB sent: the body must be read
    page = bomb(encoding)
    html = {"Content-Type": "text/html", "Content-Encoding": encoding}
    with serve({"/bomb.html": (page, html)}) as base:

        async def fetch_all() -> list[BaseException | object]:
            limits = FetchLimits(max_bytes=cap, per_host=at_once, allow_private_addresses=True)
            async with Fetcher(limits) as fetcher:
                gets = (fetcher.get(base + "/bomb.html", expect="html") for _ in range(at_once))
                return await asyncio.gather(*gets, return_exceptions=True)

        tracemalloc.start()
        try:
            results = asyncio.run(fetch_all())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert all(isinstance(r, FetchError) for r in results), results
    assert {r.cause for r in results} == {f"larger than {cap} bytes"}
    # each page in flight holds at most the cap and a piece or two; httpx
    # alone decoded 64 MiB of it at a time (over 1 GB for 16)
    assert peak < at_once * 3 * cap


def _children(pid: int) -> set[int]:
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def _cpu_s(pid: int) -> float:
    """Seconds of CPU ``pid`` has used (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _news(
    tmp_path: Path,
    base: str,
    model_url: str,
    *flags: str,
    stop_after_cpu_s: float | None = None,
    stop: int = signal.SIGTERM,
):
    """Run `pipelines news` on the server's feed; its exit code, records and every child it had."""
    sources = tmp_path / "feeds.txt"
    sources.write_text(base + "/feed.rss\n")
    out = tmp_path / "news.jsonl"
    env = {**os.environ, "OPENAI_BASE_URL": model_url, "OPENAI_API_KEY": "sk-test"}
    env.pop("PIPELINES_MODEL", None)
    command = [sys.executable, "-m", "lc_async_pipelines", "news", "--sources", str(sources)]
    command += ["--output", str(out), "-m", "openai:gpt-4o-mini", "--tools", "fixed", *flags]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    children: set[int] = set()
    signalled = False
    while process.poll() is None:
        children |= _children(process.pid)
        # a worker past stop_after_cpu_s of CPU (starting one takes about 1 s) is on a page
        if stop_after_cpu_s is not None and not signalled:
            if any(_cpu_s(pid) > stop_after_cpu_s for pid in children):
                process.send_signal(stop)
                signalled = True
        time.sleep(0.05)
    _, stderr = process.communicate()
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    records = [r for r in records if "error" in r and "id" in r]
    return process.returncode, records, children, stderr


@pytest.fixture(scope="module")
def model_url():
    with mock_server(MockConfig()) as url:
        yield url


@pytest.fixture(scope="module")
def hostile_site():
    html = {"Content-Type": "text/html"}
    with serve(
        {"/paragraphs.html": (PARAGRAPHS, html), "/attributes.html": (ATTRIBUTES, html)}
    ) as base:
        yield base


def test_a_page_that_jams_the_extractor_is_its_article_s_fetch_error(
    hostile_site, model_url, tmp_path
):
    code, records, children, stderr = _news(
        tmp_path, hostile_site, model_url, "--fetch-timeout", "3"
    )
    assert code == 1, stderr
    assert {r["input"] for r in records} == {
        hostile_site + "/paragraphs.html",
        hostile_site + "/attributes.html",
    }
    for record in records:
        assert record["error"]["type"] == "FetchError"
        assert "too slow to read: stopped after 3 s" in record["error"]["message"]
    assert children  # the pages were read in worker processes...
    assert not [pid for pid in children if _alive(pid)]  # ...and none is left


def test_the_deadline_ends_the_run_and_its_workers(hostile_site, model_url, tmp_path):
    # the pages alone would hold workers for 10 minutes: the deadline must end them
    code, records, children, stderr = _news(
        tmp_path, hostile_site, model_url, "--fetch-timeout", "600", "--deadline", "3"
    )
    assert code == 1, stderr
    assert [r["error"]["type"] for r in records] == ["DeadlineExceeded"] * 2
    assert children
    assert not [pid for pid in children if _alive(pid)]


def test_the_first_sigterm_stops_the_run_and_its_workers(hostile_site, model_url, tmp_path):
    code, records, children, stderr = _news(
        tmp_path, hostile_site, model_url, "--fetch-timeout", "600", stop_after_cpu_s=3.0
    )
    assert code == 128 + signal.SIGTERM, stderr
    assert "stopping" in stderr
    assert records == []  # nothing was done: a run again reads both pages
    assert children
    assert not [pid for pid in children if _alive(pid)]


def test_kill_9_leaves_no_worker(hostile_site, model_url, tmp_path):
    code, _, children, stderr = _news(
        tmp_path,
        hostile_site,
        model_url,
        "--fetch-timeout",
        "600",
        stop_after_cpu_s=3.0,
        stop=signal.SIGKILL,
    )
    assert code == -signal.SIGKILL, stderr
    assert children
    # the workers were busy on 10 minutes of pages; the kernel kills them with
    # their parent (PR_SET_PDEATHSIG): wait for the kill to land, then look
    for _ in range(200):
        if not [pid for pid in children if _alive(pid)]:
            break
        time.sleep(0.05)
    assert not [pid for pid in children if _alive(pid)]
