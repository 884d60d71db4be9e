"""Fetcher over httpx.MockTransport: every failure cause, the per-host limit, redirects, scrubbing."""

import asyncio
import math
from collections import Counter

import httpx
import pytest

from lc_async_pipelines.errors import ConfigurationError, FetchError
from lc_async_pipelines.news._fetch import Fetcher, FetchLimits, canonical_url, shown_url

RSS = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
PAGE = b"<!DOCTYPE html><html><head><title>x</title></head><body><p>hi</p></body></html>"


def fetcher(handler, **limits) -> Fetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Fetcher(FetchLimits(**limits), client=client)


async def fails(handler, url="http://news.example/a", expect="html", **limits) -> FetchError:
    async with fetcher(handler, **limits) as f:
        with pytest.raises(FetchError) as caught:
            await f.get(url, expect=expect)
    return caught.value


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_http_errors_name_the_status(status):
    err = await fails(lambda r: httpx.Response(status, text="nope"))
    assert err.cause == f"HTTP {status}"
    assert err.status == status
    assert err.url == "http://news.example/a"
    assert isinstance(err, OSError)


async def test_read_timeout_names_the_seconds():
    def handler(request):
        raise httpx.ReadTimeout("read timed out", request=request)

    err = await fails(handler, read_timeout_s=15)
    assert err.cause == "timed out after 15 s"
    assert err.status is None


async def test_connect_timeout_names_the_connect_seconds():
    def handler(request):
        raise httpx.ConnectTimeout("connect timed out", request=request)

    err = await fails(handler, connect_timeout_s=2.5)
    assert err.cause == "timed out after 2.5 s connecting"


async def test_a_dripping_body_is_cut_at_the_read_timeout():
    never = asyncio.Event()

    async def drip():
        yield b"<!DOCTYPE html><html><body>"
        await never.wait()  # the next byte never comes
        yield b"</body></html>"

    err = await fails(
        lambda r: httpx.Response(200, headers={"content-type": "text/html"}, content=drip()),
        read_timeout_s=0.05,
    )
    assert err.cause == "timed out after 0.05 s"


async def test_connection_failure_is_one_line():
    def handler(request):
        raise httpx.ConnectError("[Errno 111] Connection refused\nmore detail", request=request)

    err = await fails(handler)
    assert err.cause == "connection failed ([Errno 111] Connection refused)"


async def test_too_large_body_stops_reading_early():
    sent = Counter()

    async def body():
        for _ in range(100):  # 10 MB if read whole
            sent["chunks"] += 1
            yield b"x" * 100_000

    err = await fails(
        lambda r: httpx.Response(200, headers={"content-type": "text/html"}, content=body()),
        max_bytes=1_000_000,
    )
    assert err.cause == "larger than 1000000 bytes"
    assert err.status == 200
    assert sent["chunks"] <= 12  # stopped just past the cap, not at 100


async def test_declared_length_over_the_cap_is_refused_unread():
    sent = Counter()

    async def body():
        sent["chunks"] += 1
        yield b"x" * 10

    headers = {"content-type": "text/html", "content-length": "2000000"}
    err = await fails(
        lambda r: httpx.Response(200, headers=headers, content=body()), max_bytes=1000
    )
    assert err.cause == "larger than 1000 bytes"
    assert sent["chunks"] == 0


@pytest.mark.parametrize(
    ("expect", "content_type", "body", "cause"),
    [
        ("html", "application/octet-stream", b"\x00\x01", "not HTML (application/octet-stream)"),
        ("html", "application/pdf", b"%PDF-1.4", "not HTML (application/pdf)"),
        ("html", "", b"\x89PNG\r\n", "not HTML (no content type)"),
        ("feed", "image/png", b"\x89PNG\r\n", "not a feed (image/png)"),
        ("feed", "text/html; charset=utf-8", PAGE, "not a feed (text/html)"),
        ("feed", "text/plain", b"just words", "not a feed (text/plain)"),
    ],
)
async def test_wrong_content_type(expect, content_type, body, cause):
    headers = {"content-type": content_type} if content_type else {}
    err = await fails(lambda r: httpx.Response(200, headers=headers, content=body), expect=expect)
    assert err.cause == cause


@pytest.mark.parametrize(
    ("expect", "content_type", "body"),
    [
        ("feed", "application/rss+xml", RSS),
        ("feed", "application/atom+xml; charset=utf-8", b"<feed/>"),
        ("feed", "application/feed+json", b'{"version": "https://jsonfeed.org/version/1.1"}'),
        ("feed", "text/xml", RSS),
        ("feed", "text/plain", RSS),  # sniffed as XML
        ("feed", "text/html", b'\n {"version": "https://jsonfeed.org/version/1"}'),  # as JSON
        ("feed", "", RSS),
        ("html", "text/html; charset=utf-8", PAGE),
        ("html", "application/xhtml+xml", PAGE),
        ("html", "", PAGE),  # no type: sniffed as HTML
    ],
)
async def test_accepted_content_types(expect, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    async with fetcher(lambda r: httpx.Response(200, headers=headers, content=body)) as f:
        got = await f.get("https://news.example/x", expect=expect)
    assert got.body == body
    assert got.status == 200
    assert got.content_type == content_type


@pytest.mark.parametrize(
    "url", ["ftp://news.example/feed.xml", "file:///etc/passwd", "javascript:alert(1)", "/relative"]
)
async def test_not_http_is_refused_without_a_request(url):
    calls = Counter()

    def handler(request):
        calls["n"] += 1
        return httpx.Response(200, content=RSS)

    err = await fails(handler, url=url, expect="feed")
    assert err.cause == "not http(s)"
    assert calls["n"] == 0


async def test_redirects_are_followed_and_the_final_url_kept():
    def handler(request):
        if request.url.path == "/old":
            return httpx.Response(301, headers={"location": "/new"})
        return httpx.Response(200, headers={"content-type": "text/html"}, content=PAGE)

    async with fetcher(handler) as f:
        got = await f.get("http://news.example/old", expect="html")
    assert got.url == "http://news.example/new"
    assert got.body == PAGE


async def test_redirect_loop():
    err = await fails(lambda r: httpx.Response(302, headers={"location": "/a"}))
    assert err.cause.startswith("redirect loop")


async def test_redirect_to_another_scheme_is_not_http():
    def handler(request):
        if request.url.scheme != "http":  # what httpx's real transport does
            raise httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'.")
        return httpx.Response(302, headers={"location": "ftp://news.example/x"})

    err = await fails(handler)
    assert err.cause == "not http(s)"


async def test_credentials_never_reach_the_error():
    url = "https://reader:hunter2secret@news.example/feed?token=abc123xyz789"

    def handler(request):
        raise httpx.ConnectError(f"cannot reach {url}", request=request)

    err = await fails(handler, url=url, expect="feed")
    text = f"{err} {err.url} {err.cause}"
    assert "hunter2secret" not in text
    assert "abc123xyz789" not in text
    assert "reader" not in err.url  # the whole user part goes, not just the password
    assert err.cause.startswith("connection failed (")
    assert err.url.startswith("https://[redacted]@news.example/feed")


def test_shown_url_redacts_a_lone_token_user():
    assert shown_url("https://ghtoken123@news.example/x") == "https://[redacted]@news.example/x"
    assert shown_url("https://news.example/x?a=1") == "https://news.example/x?a=1"


async def test_user_agent_and_accept_are_sent():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(200, headers={"content-type": "text/html"}, content=PAGE)

    async with fetcher(handler, user_agent="test-agent/1") as f:
        await f.get("http://news.example/", expect="html")
    assert seen["user-agent"] == "test-agent/1"
    assert seen["accept"].startswith("text/html")
    assert FetchLimits().user_agent.startswith("lc-async-pipelines/")


async def test_per_host_limit_bounds_requests_in_flight():
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    full = asyncio.Event()  # both hosts at their limit
    gate = asyncio.Event()  # let the held requests finish

    async def handler(request):
        host = request.url.host
        in_flight[host] += 1
        peak[host] = max(peak[host], in_flight[host])
        if sum(in_flight.values()) == 6:
            full.set()
        await gate.wait()
        in_flight[host] -= 1
        return httpx.Response(200, headers={"content-type": "text/html"}, content=PAGE)

    async with fetcher(handler, per_host=3) as f:
        urls = [f"http://{h}.example/{i}" for h in ("a", "b") for i in range(10)]
        tasks = [asyncio.ensure_future(f.get(u, expect="html")) for u in urls]
        await asyncio.wait_for(full.wait(), 10)
        for _ in range(100):  # room for any request past the limit to reach the handler
            await asyncio.sleep(0)
        assert dict(in_flight) == {"a.example": 3, "b.example": 3}
        gate.set()
        results = await asyncio.gather(*tasks)
    assert len(results) == 20
    assert dict(peak) == {"a.example": 3, "b.example": 3}


async def test_an_injected_client_is_left_open_and_an_own_one_closed():
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204)))
    async with Fetcher(client=client):
        pass
    assert not client.is_closed
    await client.aclose()
    own = Fetcher()
    await own.aclose()
    assert own._client.is_closed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("per_host", 0),
        ("per_host", 2.5),
        ("max_bytes", 0),
        ("connect_timeout_s", 0),
        ("read_timeout_s", -1.0),
        ("read_timeout_s", math.inf),
        ("max_articles_per_source", 0),
        ("user_agent", ""),
        ("user_agent", "agent\r\nX-Evil: 1"),
    ],
)
def test_limits_refuse_values_out_of_range(field, value):
    with pytest.raises(ConfigurationError, match=field):
        FetchLimits(**{field: value})


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://News.Example.COM:443/a/b/#top", "https://news.example.com/a/b"),
        (
            "http://news.example:80/a?utm_source=x&id=7&fbclid=abc&UTM_Medium=y",
            "http://news.example/a?id=7",
        ),
        ("http://news.example:8080/a/", "http://news.example:8080/a"),
        ("http://news.example/", "http://news.example"),
        ("http://news.example/a?q=a%20b&b=2", "http://news.example/a?q=a%20b&b=2"),
        ("  http://news.example/a  ", "http://news.example/a"),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


def test_canonical_url_makes_feed_variants_equal():
    variants = [
        "http://news.example/articles/1.html",
        "http://NEWS.example/articles/1.html?utm_source=feed&utm_medium=json",
        "http://news.example:80/articles/1.html#comments",
        "http://news.example/articles/1.html/",
    ]
    assert len({canonical_url(v) for v in variants}) == 1
    assert canonical_url("http://news.example/articles/2.html") != canonical_url(variants[0])
