"""parse_feed on RSS, Atom, JSON Feed and garbage; iter_articles over httpx.MockTransport."""

import asyncio
import json
from collections import Counter
from contextlib import aclosing

import httpx
import pytest

from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news._feeds import Article, iter_articles, parse_feed
from lc_async_pipelines.news._fetch import Fetcher, FetchLimits, canonical_url

FEED_URL = "http://news.example/feeds/world.rss"

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>World</title><link>http://news.example/</link>
<item><title>Storm  closes
 ports</title><link>/articles/1.html</link>
<pubDate>Fri, 01 Mar 2024 07:30:00 +0100</pubDate>
<author>desk@news.example (Ada Field)</author>
<description>&lt;p&gt;Ports shut &lt;b&gt;today&lt;/b&gt;.&lt;/p&gt;</description></item>
<item><title>No link here</title><description>skipped</description></item>
<item><title>Bad scheme</title><link>javascript:alert(1)</link></item>
<item><title>Again</title><link>http://news.example/articles/1.html</link></item>
<item><title>Second</title><link>http://other.example/b?id=2</link></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Business</title><id>urn:b</id>
<updated>2024-03-02T10:00:00Z</updated>
<entry><title>Caf\u00e9 prices rise</title><link rel="alternate" href="../articles/2.html"/>
<id>urn:2</id><published>2024-03-02T09:00:00+02:00</published><updated>2024-03-02T10:00:00Z</updated>
<author><name>Ben Ok</name></author><summary>Prices.</summary></entry>
<entry><title>Updated only</title><link href="http://news.example/articles/3.html"/>
<id>urn:3</id><updated>2024-03-03T00:00:00Z</updated></entry>
</feed>""".encode()

JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "All",
        "items": [
            {
                "id": "4",
                "url": "/articles/4.html?utm_source=feed",
                "title": "Four",
                "summary": "Fourth.",
                "date_published": "2024-03-04T12:00:00-05:00",
                "authors": [{"name": "Cleo D"}],
            },
            {"id": "5", "external_url": "http://elsewhere.example/5", "content_text": "Five."},
            {"id": "http://news.example/articles/6.html", "author": {"name": "Old Style"}},
            {"id": "no-link"},
            "not an item",
        ],
    }
).encode()


def test_rss():
    entries = parse_feed(RSS, FEED_URL)
    assert [e.url for e in entries] == [
        "http://news.example/articles/1.html",  # resolved against the feed's URL
        "http://other.example/b?id=2",
    ]
    first = entries[0]
    assert first.title == "Storm closes ports"
    assert first.published == "2024-03-01T06:30:00+00:00"
    assert first.author == "Ada Field"
    assert first.summary == "<p>Ports shut <b>today</b>.</p>"
    assert entries[1].published is None and entries[1].author is None


def test_atom():
    entries = parse_feed(ATOM, FEED_URL)
    assert [e.url for e in entries] == [
        "http://news.example/articles/2.html",
        "http://news.example/articles/3.html",
    ]
    assert entries[0].title == "Caf\u00e9 prices rise"
    assert entries[0].published == "2024-03-02T07:00:00+00:00"
    assert entries[0].author == "Ben Ok"
    assert entries[1].published == "2024-03-03T00:00:00+00:00"  # updated, when not published


def test_json_feed():
    entries = parse_feed(b"\n  " + JSON_FEED, "http://news.example/feeds/all.json")
    assert [e.url for e in entries] == [
        "http://news.example/articles/4.html?utm_source=feed",
        "http://elsewhere.example/5",
        "http://news.example/articles/6.html",
    ]
    four, five, six = entries
    assert four.published == "2024-03-04T17:00:00+00:00"
    assert (four.title, four.author, four.summary) == ("Four", "Cleo D", "Fourth.")
    assert (five.title, five.summary, five.author) == ("", "Five.", None)
    assert six.author == "Old Style"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"this is not xml {{{ <<<", "not well-formed XML: syntax error"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not well-formed XML"),
        (b"<!DOCTYPE html><html><body><p>a page</p></body></html>", "no RSS or Atom"),
        (b'{"title": "not a feed"}', "JSON, but not a JSON Feed"),
        (b"{broken json", "not JSON"),
        (b"<rss version='2.0'><channel><title>empty</title></channel></rss>", "no entries"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "no entries"),
    ],
)
def test_not_a_feed(body, why):
    with pytest.raises(FetchError) as caught:
        parse_feed(body, FEED_URL)
    assert caught.value.cause.startswith("not a feed (")
    assert why in caught.value.cause
    assert caught.value.url == FEED_URL


def test_a_body_naming_a_file_or_url_is_never_opened(tmp_path):
    # feedparser.parse(str) would open a file of that name or fetch that URL
    path = tmp_path / "feed.xml"
    path.write_bytes(RSS)
    for body in (str(path).encode(), b"http://127.0.0.1:9/feed.xml"):
        with pytest.raises(FetchError, match="not a feed"):
            parse_feed(body, FEED_URL)


def test_article_item_text():
    article = Article("u", "Title", "Body.", "s", None, None, None)
    assert article.as_item_text() == "Title\n\nBody."
    assert Article("u", "", "Body.", "s", None, None, None).as_item_text() == "Body."


# --- iter_articles over a mock site -------------------------------------------------

BASE = "http://news.example"


def page(title: str, author: str = "Dana Reporter") -> bytes:
    paragraphs = "".join(
        f"<p>{title}: paragraph {i} of the report, with enough words to count as article text "
        "for the extractor, which skips very short blocks of boilerplate.</p>"
        for i in range(6)
    )
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title><meta name='author' content='{author}'>"
        "<meta property='article:published_time' content='2024-03-05T08:00:00+00:00'></head>"
        f"<body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
    ).encode()


def rss(*links: str) -> bytes:
    items = "".join(f"<item><title>T {link}</title><link>{link}</link></item>" for link in links)
    return f"<rss version='2.0'><channel><title>f</title>{items}</channel></rss>".encode()


class Site:
    """A mock news site: feeds, pages and failures, counting requests per path."""

    def __init__(self, routes):
        self.routes = routes
        self.hits = Counter()

    async def __call__(self, request):
        self.hits[request.url.path] += 1
        route = self.routes.get(request.url.path)
        if route is None:
            return httpx.Response(404)
        if callable(route):
            return await route(request)
        content_type, body = route
        return httpx.Response(200, headers={"content-type": content_type}, content=body)


async def collect(sources, site, **limits):
    client = httpx.AsyncClient(transport=httpx.MockTransport(site))
    async with Fetcher(FetchLimits(**limits), client=client) as fetcher:
        out = [x async for x in iter_articles(sources, fetcher)]
    await client.aclose()
    return out


async def test_iter_articles_dedupes_and_keeps_errors_with_their_urls():
    site = Site(
        {
            "/a.rss": ("application/rss+xml", rss(f"{BASE}/p/1", f"{BASE}/p/2", f"{BASE}/p/bad")),
            # /p/1 again (tracking parameter, default port, fragment) and one of its own
            "/b.rss": (
                "application/rss+xml",
                rss(f"{BASE}:80/p/1?utm_source=b#top", f"{BASE}/p/3", f"{BASE}/p/missing"),
            ),
            "/garbage.rss": ("application/rss+xml", b"no xml here"),
            "/p/1": ("text/html", page("One")),
            "/p/2": ("text/html", page("Two")),
            "/p/3": ("text/html", page("Three")),
            "/p/bad": ("application/octet-stream", b"\x00\x01\x02"),
        }
    )
    sources = [f"{BASE}/a.rss", f"{BASE}/b.rss", f"{BASE}/gone.rss", f"{BASE}/garbage.rss"]
    sources.append(f"{BASE}/a.rss?utm_campaign=x")  # the same source twice: read once
    out = await collect(sources, site)
    articles = [x for x in out if isinstance(x, Article)]
    errors = {x.url: x for x in out if isinstance(x, FetchError)}
    assert sorted(canonical_url(a.url) for a in articles) == [
        f"{BASE}/p/1",
        f"{BASE}/p/2",
        f"{BASE}/p/3",
    ]
    assert site.hits["/p/1"] == 1  # listed by two feeds, fetched once
    assert site.hits["/a.rss"] == 1
    assert {url: e.cause for url, e in errors.items()} == {
        f"{BASE}/gone.rss": "HTTP 404",
        f"{BASE}/garbage.rss": errors[f"{BASE}/garbage.rss"].cause,
        f"{BASE}/p/bad": "not HTML (application/octet-stream)",
        f"{BASE}/p/missing": "HTTP 404",
    }
    assert errors[f"{BASE}/garbage.rss"].cause.startswith("not a feed (")
    two = next(a for a in articles if a.url.endswith("/p/2"))
    assert two.title == f"T {BASE}/p/2"  # the feed's title first
    assert two.author == "Dana Reporter"  # the page's byline when the feed has none
    assert two.published == "2024-03-05"  # the page's date when the feed has none
    assert two.source == f"{BASE}/a.rss"
    assert "paragraph 3 of the report" in two.text
    assert not two.text.startswith("Two\n")  # the headline is the title, not text


async def test_max_articles_per_source():
    site = Site(
        {
            "/a.rss": ("application/rss+xml", rss(*(f"{BASE}/p/{i}" for i in range(5)))),
            **{f"/p/{i}": ("text/html", page(f"P{i}")) for i in range(5)},
        }
    )
    out = await collect([f"{BASE}/a.rss"], site, max_articles_per_source=2)
    assert sorted(a.url for a in out) == [f"{BASE}/p/0", f"{BASE}/p/1"]
    assert site.hits["/p/2"] == 0


async def test_a_page_without_text_is_its_own_error():
    site = Site(
        {
            "/a.rss": ("application/rss+xml", rss(f"{BASE}/empty", f"{BASE}/ok")),
            "/empty": ("text/html", b"<!DOCTYPE html><html><head></head><body></body></html>"),
            "/ok": ("text/html", page("Fine")),
        }
    )
    out = await collect([f"{BASE}/a.rss"], site)
    assert [type(x).__name__ for x in out].count("Article") == 1
    (error,) = [x for x in out if isinstance(x, FetchError)]
    assert (error.url, error.cause) == (f"{BASE}/empty", "no article text in the page")


async def test_a_deadline_cancels_the_fetches_under_way():
    both_held = asyncio.Event()
    released = Counter()

    async def hang(request):
        released["held"] += 1
        if released["held"] == 2:
            both_held.set()
        try:
            await asyncio.Event().wait()
        finally:
            released["cancelled"] += 1

    site = Site(
        {
            "/a.rss": ("application/rss+xml", rss(f"{BASE}/ok", f"{BASE}/hang", f"{BASE}/hang2")),
            "/ok": ("text/html", page("Fine")),
            "/hang": hang,
            "/hang2": hang,
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(site))
    got = []
    async with Fetcher(client=client) as fetcher:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:
                async with aclosing(iter_articles([f"{BASE}/a.rss"], fetcher)) as articles:
                    async for item in articles:
                        got.append(item)
                        await both_held.wait()
                        deadline.reschedule(asyncio.get_running_loop().time())  # now
    await client.aclose()
    assert [a.url for a in got] == [f"{BASE}/ok"]
    assert released["cancelled"] == 2  # both held requests were cancelled, none left running
