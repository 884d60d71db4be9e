"""A local news site for tests, notebooks and benchmarks (loopback only): articles behind feeds.

It serves the first ``--articles`` unique articles (default 50, in file order)
of ``news_summaries/writer_summaries.json`` from the shared data (CNN/DailyMail
and XSum articles; see the data's README) as HTML pages, behind three feeds
that overlap:

- ``/feeds/world.rss`` (RSS 2.0): articles 0, 2, 4, ... (absolute links, no author);
- ``/feeds/business.atom`` (Atom 1.0): articles 1, 3, 5, ... (links relative to the feed);
- ``/feeds/all.json`` (JSON Feed 1.1): articles 0, 3, 6, ..., their links
  carrying ``?utm_source=feed`` (the same article as in another feed, once
  tracking parameters are dropped).

So every article is in one feed and every third in two. The data has no
headlines, bylines or dates: each page's title is its first sentence (cut at
100 characters), and its author (``<meta name="author">``) and date
(``<meta property="article:published_time">``) are made up, the same on every
run (``AUTHORS``, one a day from 2024-03-01).

Broken cases (``BROKEN_CASES``), one error each when a run reads
``write_sources(base, path)``:

- as sources: ``/feeds/broken.rss`` (garbage text sent as ``application/rss+xml``),
  ``/feeds/missing.rss`` (404), ``/feeds/error.rss`` (500);
- as the links of ``/feeds/extra.rss``: ``/slow`` (answers after ``--slow-s``,
  default 30 s), ``/missing.html`` (404), ``/error.html`` (500), ``/big``
  (7 MB of HTML streamed without a length) and ``/file.bin``
  (``application/octet-stream``).

Not in ``write_sources``: ``/feeds/local.rss`` (``LOCAL_FEED``), a feed
whose links reach this server under another name, as a hostile feed's would
reach a private address: ``http://localhost:PORT/articles/ID.html`` directly,
and ``/to-local?id=ID`` redirecting there. Read from ``http://127.0.0.1:PORT``,
only ``127.0.0.1`` is the user's own host.

``GET /stats`` counts the requests per path.

Run: ``python -m benchmarks.news_server --port 8200 --articles 50 --slow-s 30``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from benchmarks._process import serving

ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = Path("news_summaries") / "writer_summaries.json"
SITE = "Loopback News"
DEFAULT_ARTICLES = 50
UNIQUE_ARTICLES = 109  # unique article_id values in the data file
# The good feeds, and the three that hold every article between them.
FEEDS = ("/feeds/world.rss", "/feeds/business.atom", "/feeds/all.json")
EXTRA_FEED = "/feeds/extra.rss"
LOCAL_FEED = "/feeds/local.rss"
# url path -> the start of the FetchError cause a run reports for it.
BROKEN_SOURCES = {
    "/feeds/broken.rss": "not a feed",
    "/feeds/missing.rss": "HTTP 404",
    "/feeds/error.rss": "HTTP 500",
}
BROKEN_ARTICLES = {
    "/slow": "timed out",
    "/missing.html": "HTTP 404",
    "/error.html": "HTTP 500",
    "/big": "larger than",
    "/file.bin": "not HTML",
}
BROKEN_CASES = {**BROKEN_SOURCES, **BROKEN_ARTICLES}
BIG_BYTES = 7 * 1024 * 1024
AUTHORS = (
    "Amira Castellanos",
    "Ben Okafor",
    "Clara Lindqvist",
    "Dev Raman",
    "Elena Moretti",
    "Finn O'Hara",
    "Grace Adeyemi",
)
Handler = Callable[[Request], Awaitable[Response]]
_EPOCH = datetime(2024, 3, 1, 7, 30, tzinfo=UTC)
_TITLE_CHARS = 100


def data_dir() -> Path:
    """Return the data folder: ``$PIPELINES_DATA_DIR``, else the project's ``../shared/data``."""
    return Path(os.environ.get("PIPELINES_DATA_DIR", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Story:
    """One served article: its id, made-up metadata, and real paragraphs."""

    id: str
    title: str
    author: str
    published: datetime
    paragraphs: tuple[str, ...]

    @property
    def path(self) -> str:
        """The page's URL path."""
        return f"/articles/{self.id}.html"


def _title(paragraph: str) -> str:
    sentence = " ".join(re.split(r"(?<=[.!?])\s", paragraph.strip(), maxsplit=1)[0].split())
    if len(sentence) <= _TITLE_CHARS:
        return sentence.rstrip(".")
    return sentence[:_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def load_stories(count: int = DEFAULT_ARTICLES, data: Path | None = None) -> list[Story]:
    """Return the first ``count`` unique articles of the data file, in file order.

    Raises:
        FileNotFoundError: the data file is not there.
        ValueError: ``count`` is not between 1 and the 109 unique articles.
    """
    if not 1 <= count <= UNIQUE_ARTICLES:
        raise ValueError(f"--articles must be 1..{UNIQUE_ARTICLES}, got {count}")
    rows = json.loads(((data or data_dir()) / DATA_FILE).read_text(encoding="utf-8"))
    stories: dict[str, Story] = {}
    for row in rows:
        if row["article_id"] in stories:
            continue
        paragraphs = tuple(p.strip() for p in row["article"].splitlines() if p.strip())
        i = len(stories)
        stories[row["article_id"]] = Story(
            id=row["article_id"],
            title=_title(paragraphs[0]),
            author=AUTHORS[i % len(AUTHORS)],
            published=_EPOCH + timedelta(days=i, minutes=17 * i),
            paragraphs=paragraphs,
        )
        if len(stories) == count:
            break
    return list(stories.values())


def _page(story: Story) -> str:
    title = html.escape(story.title)
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in story.paragraphs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} | {SITE}</title>
<meta name="author" content="{html.escape(story.author)}">
<meta property="article:published_time" content="{story.published.isoformat()}">
<meta property="og:site_name" content="{SITE}">
<meta property="og:title" content="{title}">
</head><body>
<header><nav><a href="/">Home</a> | <a href="/feeds/world.rss">World</a></nav></header>
<main><article>
<h1>{title}</h1>
<p class="byline">By {html.escape(story.author)}</p>
{body}
</article></main>
<footer><p>{SITE}, a local test site.</p></footer>
</body></html>
"""


def _summary(story: Story) -> str:
    return story.paragraphs[0][:300]


def _rss(base: str, title: str, items: Sequence[tuple[str, str, datetime | None, str]]) -> str:
    entries = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f"<guid isPermaLink='true'>{escape(link)}</guid>"
        + (f"<pubDate>{format_datetime(when)}</pubDate>" if when else "")
        + f"<description>{escape(summary)}</description></item>"
        for t, link, when, summary in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n<rss version='2.0'><channel>"
        f"<title>{escape(title)}</title><link>{escape(base)}/</link>"
        f"<description>{escape(title)} from {SITE}</description>{entries}</channel></rss>\n"
    )


def _atom(base: str, stories: list[Story]) -> str:
    updated = max(s.published for s in stories).isoformat() if stories else _EPOCH.isoformat()
    entries = "".join(
        f"<entry><title>{escape(s.title)}</title>"
        f"<link rel='alternate' type='text/html' href='..{escape(s.path)}'/>"
        f"<id>urn:loopback-news:{s.id}</id><published>{s.published.isoformat()}</published>"
        f"<updated>{s.published.isoformat()}</updated>"
        f"<author><name>{escape(s.author)}</name></author>"
        f"<summary>{escape(_summary(s))}</summary></entry>"
        for s in stories
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n<feed xmlns='http://www.w3.org/2005/Atom'>"
        f"<title>Business | {SITE}</title><id>urn:loopback-news:business</id>"
        f"<updated>{updated}</updated><link rel='self' href='{escape(base)}/feeds/business.atom'/>"
        f"{entries}</feed>\n"
    )


def _json_feed(base: str, stories: list[Story]) -> dict[str, object]:
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"All | {SITE}",
        "home_page_url": base + "/",
        "feed_url": base + "/feeds/all.json",
        "items": [
            {
                "id": s.id,
                "url": f"{base}{s.path}?utm_source=feed&utm_medium=json",
                "title": s.title,
                "summary": _summary(s),
                "date_published": s.published.isoformat(),
                "authors": [{"name": s.author}],
            }
            for s in stories
        ],
    }


def create_app(stories: list[Story], *, slow_s: float = 30.0) -> Starlette:
    """Return the Starlette app serving ``stories``, their feeds and the broken cases."""
    by_id = {s.id: s for s in stories}
    hits: Counter[str] = Counter()
    binary = random.Random(0).randbytes(4096)

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def article(request: Request) -> Response:
        story = by_id.get(request.path_params["id"])
        if story is None:
            return Response("no such article", status_code=404, media_type="text/plain")
        return Response(_page(story), media_type="text/html; charset=utf-8")

    async def world(request: Request) -> Response:
        items = [
            (s.title, f"{base(request)}{s.path}", s.published, _summary(s)) for s in stories[::2]
        ]
        return Response(
            _rss(base(request), f"World | {SITE}", items), media_type="application/rss+xml"
        )

    async def business(request: Request) -> Response:
        return Response(_atom(base(request), stories[1::2]), media_type="application/atom+xml")

    async def everything(request: Request) -> Response:
        return JSONResponse(
            _json_feed(base(request), stories[::3]), media_type="application/feed+json"
        )

    async def extra(request: Request) -> Response:
        items = [
            (f"Broken case {path}", f"{base(request)}{path}", None, f"expected: {cause}")
            for path, cause in BROKEN_ARTICLES.items()
        ]
        return Response(
            _rss(base(request), f"Extra | {SITE}", items), media_type="application/rss+xml"
        )

    def local(request: Request) -> str:
        return f"http://localhost:{request.url.port}"

    async def local_feed(request: Request) -> Response:
        first, second = stories[0], stories[1]
        items = [
            (first.title, f"{local(request)}{first.path}", first.published, _summary(first)),
            (second.title, f"{base(request)}/to-local?id={second.id}", None, _summary(second)),
        ]
        return Response(
            _rss(base(request), f"Local | {SITE}", items), media_type="application/rss+xml"
        )

    async def to_local(request: Request) -> Response:
        story = by_id.get(request.query_params.get("id", ""))
        if story is None:
            return Response("no such article", status_code=404, media_type="text/plain")
        return RedirectResponse(f"{local(request)}{story.path}", status_code=302)

    async def broken_feed(request: Request) -> Response:
        garbage = "this is not a feed {{{ <<< ]]> \x00 just text, not XML\n" * 20
        return Response(garbage, media_type="application/rss+xml")

    async def not_found(request: Request) -> Response:
        return Response("not found", status_code=404, media_type="text/plain")

    async def server_error(request: Request) -> Response:
        return Response("internal error", status_code=500, media_type="text/plain")

    async def slow(request: Request) -> Response:
        ends = time.monotonic() + slow_s
        while time.monotonic() < ends:  # give up early once the client has gone
            await asyncio.sleep(min(0.2, max(0.0, ends - time.monotonic())))
            if await request.is_disconnected():
                return Response(status_code=499)
        page = (
            "<!DOCTYPE html><html><head><title>Slow</title></head><body><p>late</p></body></html>"
        )
        return Response(page, media_type="text/html")

    async def big(request: Request) -> Response:
        chunk = ("<p>" + "padding text " * 5000 + "</p>\n").encode()

        async def body() -> AsyncIterator[bytes]:
            yield b"<!DOCTYPE html><html><head><title>Big</title></head><body>"
            sent = 0
            while sent < BIG_BYTES:
                yield chunk
                sent += len(chunk)
            yield b"</body></html>"

        return StreamingResponse(body(), media_type="text/html")

    async def file_bin(request: Request) -> Response:
        return Response(binary, media_type="application/octet-stream")

    async def stats(request: Request) -> Response:
        return JSONResponse(dict(hits))

    handlers = [
        ("/articles/{id}.html", article),
        ("/feeds/world.rss", world),
        ("/feeds/business.atom", business),
        ("/feeds/all.json", everything),
        (EXTRA_FEED, extra),
        (LOCAL_FEED, local_feed),
        ("/to-local", to_local),
        ("/feeds/broken.rss", broken_feed),
        ("/feeds/missing.rss", not_found),
        ("/feeds/error.rss", server_error),
        ("/missing.html", not_found),
        ("/error.html", server_error),
        ("/slow", slow),
        ("/big", big),
        ("/file.bin", file_bin),
        ("/stats", stats),
    ]

    def counted(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            hits[request.url.path] += 1
            return await handler(request)

        return run

    return Starlette(routes=[Route(path, counted(handler)) for path, handler in handlers])


def write_sources(base_url: str, path: Path, *, broken: bool = True) -> Path:
    """Write a sources file for the server at ``base_url``: one feed URL per line, ``#`` comments.

    With ``broken`` it lists, after the three good feeds, ``/feeds/extra.rss``
    (whose links are the broken articles) and the three broken sources: a run
    then yields ``len(BROKEN_CASES)`` (8) errors besides the articles.

    Returns:
        ``path``.
    """
    base_url = base_url.rstrip("/")
    lines = [f"# feeds of {SITE} at {base_url}", *(base_url + feed for feed in FEEDS)]
    if broken:
        lines.append("# broken cases: one error each")
        lines += [base_url + EXTRA_FEED, *(base_url + p for p in BROKEN_SOURCES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def spawn(*options: str, log: Path | None = None) -> Iterator[str]:
    """Run this server in its own process on a free loopback port; yield its base URL.

    ``options`` are its command-line flags (``"--articles", "50", "--slow-s", "10"``).
    The output goes to ``log`` (default: discarded). On exit the process is
    terminated, and killed after 5 s.

    Raises:
        RuntimeError: the server exited (data missing?), or did not answer within 10 s.
    """
    with serving("benchmarks.news_server", "the news server", options, log) as base:
        yield base


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--articles", type=int, default=DEFAULT_ARTICLES)
    parser.add_argument("--slow-s", type=float, default=30.0, help="seconds /slow takes to answer")
    parser.add_argument("--sources", type=Path, help="also write a sources file here")
    args = parser.parse_args()
    try:
        stories = load_stories(args.articles)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"news_server: {exc}\n")
    if args.sources:
        write_sources(f"http://127.0.0.1:{args.port}", args.sources)
    app = create_app(stories, slow_s=args.slow_s)
    # timeout_graceful_shutdown: a held /slow answer must not keep the process up
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )


if __name__ == "__main__":
    main()
