"""The news task end to end: feeds fetched at once, each article analysed, records as they end."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langchain_core.runnables import Runnable, RunnableConfig

from lc_async_pipelines._scrub import scrub
from lc_async_pipelines.errors import ConfigurationError, DeadlineExceeded, FetchError, InputError
from lc_async_pipelines.news._feeds import parse_feed
from lc_async_pipelines.news._fetch import Fetcher, canonical_url, shown_url
from lc_async_pipelines.runner import Item, Record, RunOptions, item_id_for, run_items

_MAX_SOURCES = 10_000
_MAX_SOURCES_BYTES = 10_000_000
_MAX_URL_CHARS = 2_048


def read_sources(path: Path) -> list[str]:
    """Read a sources file: one feed URL (RSS, Atom or JSON Feed) per line; ``#`` starts a comment.

    Repeated URLs are kept once, in first-seen order.

    Raises:
        InputError: the file cannot be read, is over 10 MB or not UTF-8 text,
            holds no URL or more than 10,000, or a line that is not an
            ``http(s)://`` URL of at most 2,048 characters (the message names
            the line; credentials in it are not shown).
    """
    try:
        if path.stat().st_size > _MAX_SOURCES_BYTES:
            raise InputError(f"{path}: over 10 MB; a sources file lists feed URLs, one a line")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; give one feed URL per line") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    urls: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        url = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not url:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a port out of range)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or " " in url
            or len(url) > _MAX_URL_CHARS
        ):
            shown = shown_url(url)[:80]
            raise InputError(f"{path}: line {number}: {shown!r} is not an http(s) URL")
        urls.setdefault(url)
    if not urls:
        raise InputError(f"{path}: no feed URL in it; give one http(s) URL per line")
    if len(urls) > _MAX_SOURCES:
        raise InputError(f"{path}: {len(urls)} sources; at most {_MAX_SOURCES:,} per run")
    return list(urls)


def source_id(url: str) -> str:
    """Return the record id of a source's failure: ``source-`` and its content id."""
    return "source-" + item_id_for(url)


def article_id(url: str) -> str:
    """Return an article's record id: the content id of its canonical URL."""
    return item_id_for(canonical_url(url))


def without_credentials(url: str) -> str:
    """Return ``url`` without a ``user:password@`` part: an article link is fetched and kept so.

    A feed's links are not the user's to vouch for; a credential in one would
    otherwise reach the records, the screen and the model's prompt.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _failure(item_id: str, line: int, url: str, exc: BaseException) -> Record:
    return Record(
        id=item_id,
        line=line,
        input=shown_url(url),
        error={"type": type(exc).__name__, "message": scrub(str(exc))},
        exception=exc,
    )


async def _entries(
    sources: Sequence[str],
    fetcher: Fetcher,
    failures: list[Record],
    wait_s: float | None,
    stop: asyncio.Event | None,
) -> list[Item]:
    """Fetch and parse every source at once; one item per distinct article, failures aside.

    A stop (``stop`` set: Ctrl-C) ends the wait at once; feeds not read then
    get no record, so a run again reads them.
    """
    most = fetcher.limits.max_articles_per_source
    fetcher.trust(sources)  # the user's own hosts may be local; their feeds' links may not

    async def one(url: str) -> list[str]:
        fetched = await fetcher.get(url, expect="feed")
        try:
            entries = await asyncio.to_thread(parse_feed, fetched.body, fetched.url)
        except FetchError:
            raise
        except Exception as exc:  # a parser's bug on one feed must not end the run
            raise FetchError(shown_url(url), f"cannot be read ({type(exc).__name__})") from exc
        return [entry.url for entry in entries[:most]]

    tasks = [asyncio.ensure_future(one(url)) for url in sources]
    try:
        await _wait_for(tasks, wait_s, stop)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stopped = stop is not None and stop.is_set()
    return _articles(sources, tasks, stopped, failures)


async def _wait_for(
    tasks: Sequence[asyncio.Future[list[str]]], wait_s: float | None, stop: asyncio.Event | None
) -> None:
    """Wait until every feed is read, ``wait_s`` seconds have passed, or ``stop`` is set."""
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        pending: set[asyncio.Future[Any]] = set(tasks)
        loop = asyncio.get_running_loop()
        ends_at = None if wait_s is None else loop.time() + wait_s
        while pending and not (stop is not None and stop.is_set()):
            left = None if ends_at is None else ends_at - loop.time()
            if left is not None and left <= 0:
                break
            waiting = pending | ({stopping} if stopping is not None else set())
            done, _ = await asyncio.wait(waiting, timeout=left, return_when="FIRST_COMPLETED")
            pending -= done
    finally:
        if stopping is not None:
            stopping.cancel()


def _articles(
    sources: Sequence[str],
    tasks: Sequence[asyncio.Future[list[str]]],
    stopped: bool,
    failures: list[Record],
) -> list[Item]:
    """One item per distinct article of the feeds read; a record in ``failures`` per feed not."""
    items: dict[str, Item] = {}
    for line, (url, task) in enumerate(zip(sources, tasks, strict=True), 1):
        if task.cancelled() and stopped:
            continue  # no record: a run again reads it
        if task.cancelled():
            exc: BaseException | None = DeadlineExceeded(
                f"{shown_url(url)}: the deadline passed before the feed was read"
            )
        else:
            exc = task.exception()
        if exc is not None:
            failures.append(_failure(source_id(url), line, url, exc))
            continue
        for link in task.result():
            link = without_credentials(link)
            key = article_id(link)
            if key not in items:
                items[key] = Item(id=key, line=len(items) + 1, input=link)
    return list(items.values())


async def analyse_news(
    sources: Sequence[str],
    chain: Runnable[str, Any],
    fetcher: Fetcher,
    options: RunOptions | None = None,
    *,
    config: RunnableConfig | None = None,
    deadline_s: float | None = None,
) -> AsyncIterator[Record]:
    """Run the news task; yield a :class:`Record` per failed source and per article as each ends.

    Every source is fetched at once (``fetcher`` holds the per-host limit,
    timeouts, size cap and content-type check); a source that fails becomes
    one error record (``FetchError`` naming the URL and the cause). The
    articles of all feeds, each once however many feeds list it (by canonical
    URL), then go through ``chain`` on the runner (:func:`~lc_async_pipelines.runner.run_items`:
    window, retries, resume by ``options.skip``); an article that cannot be
    fetched or analysed becomes its own error record and the others go on.

    Args:
        sources: feed URLs (:func:`read_sources`). Their hosts are given to
            ``fetcher.trust``: they may be on this machine or network, the
            other hosts their feeds link to may not (a chain's tools should
            fetch through the same fetcher, as the CLI's do).
        chain: URL in, report out: :func:`build_news_tool_chain` or :func:`build_news_agent`.
        fetcher: the HTTP client the feeds are read with (the chain's tools
            have their own or the same); at most its
            ``limits.max_articles_per_source`` articles are taken from each feed.
        options: the runner's options; ``stop`` and ``grace_s`` are used for the deadline.
        config: ``RunnableConfig`` for every article (callbacks, ``max_concurrency``).
        deadline_s: overall deadline in seconds from the call: feeds not read
            by then become error records, and articles not analysed by then
            become ``DeadlineExceeded`` records (run again to resume them).

    Yields:
        Records in completion order: failed sources first, then articles.
    """
    sources = _checked_sources(sources, deadline_s)
    if not sources:
        return
    options = options or RunOptions()
    loop = asyncio.get_running_loop()
    ends_at = None if deadline_s is None else loop.time() + deadline_s
    failures: list[Record] = []
    items = await _entries(sources, fetcher, failures, deadline_s, options.stop)
    for record in failures:
        yield record
    skip = options.skip or frozenset()
    if not items:
        return
    stop = options.stop or asyncio.Event()
    timer = None
    if ends_at is not None:
        timer = loop.call_at(ends_at, stop.set)
        options = dataclasses.replace(options, stop=stop, grace_s=0.0)
    seen: set[str] = set()
    started = time.perf_counter()
    try:
        async for record in run_items(chain, items, options, config=config):
            seen.add(record.id)
            yield record
    finally:
        if timer is not None:
            timer.cancel()
    if ends_at is not None and stop.is_set():
        waited = time.perf_counter() - started
        for record in _past_deadline(items, seen, skip, options.limit, waited):
            yield record


def _checked_sources(sources: Sequence[str], deadline_s: float | None) -> list[str]:
    """The distinct sources, in order; a ConfigurationError for one string or a bad deadline."""
    if isinstance(sources, str):
        raise ConfigurationError("sources: give a list of feed URLs, not one string")
    if deadline_s is not None and not (0 < deadline_s < float("inf")):
        msg = f"deadline_s must be a positive number of seconds, got {deadline_s}"
        raise ConfigurationError(msg)
    return list(dict.fromkeys(sources))


def _past_deadline(
    items: list[Item], seen: set[str], skip: frozenset[str], limit: int | None, waited: float
) -> Iterator[Record]:
    """A ``DeadlineExceeded`` record for each article the deadline left unanalysed."""
    for item in items:
        if item.id in seen or item.id in skip:
            continue
        if limit is not None and len(seen) >= limit:
            break
        exc = DeadlineExceeded(f"the run's deadline passed ({waited:.0f} s of analysis)")
        seen.add(item.id)
        yield _failure(item.id, item.line, str(item.input), exc)
