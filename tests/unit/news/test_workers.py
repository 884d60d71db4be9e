"""The Extractor: extraction in worker processes, killed past its time or memory limit."""

import asyncio
import os

import pytest

from lc_async_pipelines.errors import ConfigurationError, FetchError
from lc_async_pipelines.news import Extractor, FetchLimits
from lc_async_pipelines.news._extract import extract_page, page_metadata
from tests.unit.news.test_extract import PAGE, URL

# 0.8 MB of unclosed <p> tags: about 20 s of trafilatura, quadratic in the page
JAM = b"<html><body>" + b"<p>" * 266_000


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def workers() -> list[int]:
    """The live worker processes of this test process (one extractor at a time)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"news._workers" in command and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


async def test_pages_and_metadata_are_read_as_in_process():
    async with Extractor(timeout_s=60) as extractor:
        assert await extractor.page(PAGE.encode("utf-8"), URL) == extract_page(PAGE, URL)
        assert await extractor.page(PAGE, URL) == extract_page(PAGE, URL)  # text as text
        assert await extractor.metadata(PAGE, URL) == page_metadata(PAGE, URL)
        with pytest.raises(FetchError) as caught:
            await extractor.page(b"<html><body></body></html>", URL)
        assert caught.value.cause == "no article text in the page"
        assert caught.value.url == URL


async def test_a_page_past_its_time_is_a_fetch_error_and_its_worker_replaced():
    others = set(workers())  # other tests' extractors may still have theirs
    async with Extractor(timeout_s=1, workers=1) as extractor:
        await extractor.page(PAGE, URL)
        (first,) = set(workers()) - others
        with pytest.raises(FetchError) as caught:
            await extractor.page(JAM, URL)
        assert caught.value.cause == "too slow to read: stopped after 1 s"
        assert not alive(first)
        assert (await extractor.page(PAGE, URL)).title  # a fresh worker reads the next page
        assert first not in workers()


async def test_a_page_past_its_memory_is_a_fetch_error():
    async with Extractor(timeout_s=120, memory_bytes=50_000_000, workers=1) as extractor:
        with pytest.raises(FetchError) as caught:
            await extractor.page(JAM, URL)
        assert caught.value.cause == "too large to read: over 50 MB of memory"


async def test_a_cancelled_call_and_closing_end_every_worker():
    others = set(workers())
    extractor = Extractor(timeout_s=120, workers=2)
    jammed = asyncio.ensure_future(extractor.page(JAM, URL))
    await asyncio.sleep(0)  # it takes the first worker
    assert (await extractor.page(PAGE, URL)).title  # a second one, while the first is busy
    started = set(workers()) - others
    assert len(started) == 2
    jammed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await jammed
    assert len(set(workers()) - others) == 1  # the busy one was killed, the idle one kept
    await extractor.aclose()
    assert not any(alive(pid) for pid in started)
    with pytest.raises(FetchError, match="the run is ending"):
        await extractor.page(PAGE, URL)


def test_for_pages_follows_the_fetch_limits():
    extractor = Extractor.for_pages(FetchLimits(read_timeout_s=7, max_bytes=20_000_000))
    assert extractor.timeout_s == 7
    assert extractor.memory_bytes == 2_000_000_000
    assert Extractor.for_pages(FetchLimits()).memory_bytes == 500_000_000


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout_s": 0}, {"timeout_s": float("inf")}, {"memory_bytes": 0}, {"workers": 0}],
)
def test_limits_out_of_range(kwargs):
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        Extractor(**kwargs)


def test_the_worker_does_not_import_from_the_current_folder(tmp_path, monkeypatch):
    # a trafilatura.py where the user runs must not be what the worker imports
    (tmp_path / "trafilatura.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)

    async def read() -> str | None:
        async with Extractor(timeout_s=60, workers=1) as extractor:
            return (await extractor.page(PAGE, URL)).title

    assert asyncio.run(read()) and os.getcwd() == str(tmp_path)
