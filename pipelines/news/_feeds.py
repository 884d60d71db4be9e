"""News feeds: parsing RSS, Atom and JSON Feed, and the walk from feed URLs to articles.

RSS and Atom are read by feedparser, always from bytes wrapped in a stream:
``feedparser.parse`` given a string fetches a URL or opens a file of that
name (its docstring: "Wrap an untrusted string in a io.BytesIO"). feedparser
6.0 has no JSON Feed reader (kurtmckee/feedparser#103 landed after 6.0.x),
so JSON Feed 1.0/1.1 (https://www.jsonfeed.org/version/1.1/) is read here
from its few fields.
"""

from __future__ import annotations

import asyncio
import calendar
import io
import json
import re
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser  # type: ignore[import-untyped]

from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news._fetch import Fetcher, canonical_url, shown_url
from lc_async_pipelines.news._workers import Extractor

__all__ = ["Article", "FeedEntry", "iter_articles", "parse_feed"]

_WHITESPACE = b"\xef\xbb\xbf \t\r\n"
_DETAIL_CHARS = 120
_RSS_AUTHOR = re.compile(r"^\S+@\S+\s*\((.+)\)$")


@dataclass(frozen=True)
class FeedEntry:
    """One entry of a feed.

    Attributes:
        url: the entry's link, absolute (resolved against the feed's URL).
        title: its title, ``""`` when the feed gives none.
        published: when it was published (or else updated), ISO 8601 in UTC,
            None when the feed does not say or the date does not parse.
        summary: the feed's summary or description as given (RSS and Atom
            summaries may hold HTML, sanitised by feedparser), None when absent.
        author: the author's name, None when absent.
    """

    url: str
    title: str
    published: str | None
    summary: str | None
    author: str | None


@dataclass(frozen=True)
class Article:
    """An article ready for analysis: its page's text and what the feed and page say of it.

    Attributes:
        url: the article's URL as its (first) feed lists it.
        title: the feed entry's title, else the page's; ``""`` when neither has one.
        text: the page's main text (trafilatura).
        source: the URL of the feed it was first found in (credentials scrubbed).
        published: ISO 8601: the feed's date (UTC, to the second), else the page's (a day).
        author: the feed's author, else the page's byline.
        site: the page's site name.
    """

    url: str
    title: str
    text: str
    source: str
    published: str | None
    author: str | None
    site: str | None

    def as_item_text(self) -> str:
        """Return the text to analyse: title, a blank line, text (the text alone when untitled)."""
        return f"{self.title}\n\n{self.text}" if self.title else self.text


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text or None


def _http(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _iso_struct(value: object) -> str | None:
    if not isinstance(value, time.struct_time):
        return None
    return datetime.fromtimestamp(calendar.timegm(value), UTC).isoformat()


def _iso_text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def _detail(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:_DETAIL_CHARS]


def _xml_author(entry: Any) -> str | None:
    raw = _text(entry.get("author"))
    # RSS's "email (Name)": read here, as feedparser 6.0 cuts the name when the
    # email's top-level domain is over 4 letters ("desk@news.example (Ada)" -> "ple (Ada")
    named = _RSS_AUTHOR.match(raw or "")
    if named:
        return named.group(1).strip()
    name = _text((entry.get("author_detail") or {}).get("name"))
    if name:
        return name
    return raw if raw and "@" not in raw else None  # a bare email is not a name


def _xml_entries(body: bytes, url: str) -> list[FeedEntry]:
    # the content type makes feedparser use its strict XML parser, the encoding from the XML itself
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-location": url, "content-type": "application/xml"},
    )
    entries: list[FeedEntry] = []
    for entry in parsed.entries:
        link = entry.get("link") or next(
            (x.get("href") for x in entry.get("links", []) if x.get("href")), None
        )
        if not isinstance(link, str) or not link.strip():
            continue
        entries.append(
            FeedEntry(
                url=urljoin(url, link.strip()),
                title=_text(entry.get("title")) or "",
                published=_iso_struct(entry.get("published_parsed") or entry.get("updated_parsed")),
                summary=entry.get("summary") or None,
                author=_xml_author(entry),
            )
        )
    if not entries and not parsed.get("version"):
        exc = parsed.get("bozo_exception")
        why = "no RSS or Atom"
        if exc is not None:
            # SAX's "<unknown>:2:0: " counts lines of feedparser's rewritten body, not the feed's
            why = "not well-formed XML: " + re.sub(r"^<[^>]*>:\d+:\d+:\s*", "", _detail(exc))
        raise FetchError(shown_url(url), f"not a feed ({why})")
    return entries


def _json_author(item: dict[str, Any]) -> str | None:
    authors = item.get("authors")
    if isinstance(authors, list):  # JSON Feed 1.1
        for author in authors:
            if isinstance(author, dict) and _text(author.get("name")):
                return _text(author.get("name"))
    author = item.get("author")  # JSON Feed 1.0
    return _text(author.get("name")) if isinstance(author, dict) else None


def _json_entries(body: bytes, url: str) -> list[FeedEntry]:
    try:
        feed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FetchError(shown_url(url), f"not a feed (not JSON: {_detail(exc)})") from None
    version = feed.get("version") if isinstance(feed, dict) else None
    items = feed.get("items") if isinstance(feed, dict) else None
    if not (isinstance(version, str) and "jsonfeed.org" in version and isinstance(items, list)):
        raise FetchError(shown_url(url), "not a feed (JSON, but not a JSON Feed)")
    entries: list[FeedEntry] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        # "id" may be any unique string: a link only when it is an absolute URL
        ident = item.get("id")
        candidates = (item.get("url"), item.get("external_url"), ident if _http(ident) else None)
        link = next((c.strip() for c in candidates if isinstance(c, str) and c.strip()), None)
        if link is None:
            continue
        summary = item.get("summary") or item.get("content_text") or item.get("content_html")
        entries.append(
            FeedEntry(
                url=urljoin(url, link),
                title=_text(item.get("title")) or "",
                published=_iso_text(item.get("date_published") or item.get("date_modified")),
                summary=summary if isinstance(summary, str) and summary else None,
                author=_json_author(item),
            )
        )
    return entries


def parse_feed(body: bytes, url: str) -> list[FeedEntry]:
    """Parse an RSS, Atom or JSON Feed document into its entries.

    Entries without an ``http(s)`` link are left out, and a link listed twice
    is kept once (its first entry). Nothing is fetched.

    Args:
        body: the feed's bytes, as fetched (encoding read from the document).
        url: the feed's URL: relative links are resolved against it.

    Returns:
        The entries with links, in feed order.

    Raises:
        FetchError: ``"not a feed (...)"`` when ``body`` is not RSS, Atom or
            JSON Feed, or holds no entry with a link.
    """
    if body.lstrip(_WHITESPACE)[:1] == b"{":
        entries = _json_entries(body, url)
    else:
        entries = _xml_entries(body, url)
    kept: dict[str, FeedEntry] = {}
    for entry in entries:
        if _http(entry.url):
            kept.setdefault(entry.url, entry)
    if not kept:
        raise FetchError(shown_url(url), "not a feed (no entries with links)")
    return list(kept.values())


def _unexpected(url: str, exc: Exception) -> FetchError:
    error = FetchError(shown_url(url), f"cannot be read ({type(exc).__name__}: {_detail(exc)})")
    error.__cause__ = exc
    return error


async def iter_articles(
    sources: Sequence[str], fetcher: Fetcher, *, extractor: Extractor | None = None
) -> AsyncIterator[Article | FetchError]:
    """Fetch every source and every article in them concurrently; yield each as soon as it is ready.

    All feeds are fetched at once (``fetcher`` holds the per-host limit,
    timeouts, size cap and content-type check) and parsed; every entry's page
    is fetched as soon as its feed is read and its text extracted
    (:func:`~lc_async_pipelines.news.extract_page`, in ``extractor``'s worker
    processes, each page bounded in time and memory). An
    article listed by several feeds (by :func:`canonical_url`) is fetched and
    yielded once, with the first feed read as its ``source``; at most
    ``fetcher.limits.max_articles_per_source`` entries are read per feed.

    Args:
        sources: feed URLs (RSS, Atom or JSON Feed); repeats are read once.
            Their hosts are given to :meth:`Fetcher.trust`: they may be on
            this machine or network, the other hosts their feeds link to may not.
        fetcher: the :class:`Fetcher` every request goes through.
        extractor: the :class:`Extractor` pages are read in; without one,
            ``Extractor.for_pages(fetcher.limits)``, closed when the iteration ends.

    Yields:
        Each :class:`Article`, and each failure (a source's or an article's)
        as a :class:`FetchError` naming its URL and cause, in completion order.
        Nothing is raised for one bad source or article.

    Cancelling the consumer (an ``asyncio.timeout`` around the loop) or
    closing the iterator (``contextlib.aclosing``) cancels every fetch still
    under way and waits for them.
    """
    own = extractor is None
    walk = _Walk(fetcher, extractor or Extractor.for_pages(fetcher.limits))
    fetcher.trust(sources)  # the user's own hosts may be local; their feeds' links may not
    read: set[str] = set()
    for source in sources:
        key = canonical_url(source)
        if key not in read:
            read.add(key)
            walk.start(walk.read_source(source))
    try:
        async for outcome in walk.outcomes():
            yield outcome
    finally:
        await walk.cancel()
        if own:
            await walk.extractor.aclose()


def _renamed(exc: FetchError, url: str) -> FetchError:
    """Name the URL the user or the feed gave, not the one a redirect ended at."""
    if exc.url == shown_url(url):
        return exc
    return FetchError(shown_url(url), exc.cause, status=exc.status)


class _Walk:
    """The fetches of one :func:`iter_articles` call and the queue their outcomes go to."""

    def __init__(self, fetcher: Fetcher, extractor: Extractor) -> None:
        self.fetcher = fetcher
        self.extractor = extractor
        self.results: asyncio.Queue[Article | FetchError | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.seen: set[str] = set()  # canonical article URLs already started
        self.pending = 0  # outcomes still owed to the queue (None for a feed read whole)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self.pending += 1
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def outcomes(self) -> AsyncIterator[Article | FetchError]:
        while self.pending:
            outcome = await self.results.get()
            self.pending -= 1
            if outcome is not None:
                yield outcome

    async def cancel(self) -> None:
        left = list(self.tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)

    async def read_source(self, url: str) -> None:
        try:
            fetched = await self.fetcher.get(url, expect="feed")
            entries = await asyncio.to_thread(parse_feed, fetched.body, fetched.url)
        except FetchError as exc:
            self.results.put_nowait(_renamed(exc, url))
            return
        except Exception as exc:
            self.results.put_nowait(_unexpected(url, exc))
            return
        for entry in entries[: self.fetcher.limits.max_articles_per_source]:
            key = canonical_url(entry.url)
            if key not in self.seen:
                self.seen.add(key)
                self.start(self.read_article(entry, url))
        self.results.put_nowait(None)

    async def read_article(self, entry: FeedEntry, source: str) -> None:
        try:
            fetched = await self.fetcher.get(entry.url, expect="html")
            page = await self.extractor.page(fetched.body, fetched.url)
        except FetchError as exc:  # a redirect's page: name the URL the feed gave
            self.results.put_nowait(_renamed(exc, entry.url))
            return
        except Exception as exc:  # a parser's bug on one page must not end the run
            self.results.put_nowait(_unexpected(entry.url, exc))
            return
        article = Article(
            url=entry.url,
            title=entry.title or page.title or "",
            text=page.text,
            source=shown_url(source),
            published=entry.published or page.published,
            author=entry.author or page.author,
            site=page.site,
        )
        self.results.put_nowait(article)
