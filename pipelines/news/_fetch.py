"""HTTP fetching of news feeds and pages: per-host limits, timeouts, size cap, content-type check.

Every failure is a :class:`~lc_async_pipelines.errors.FetchError` naming the
URL (credentials scrubbed) and a one-line cause a user can act on. Timeouts
are httpx's (https://www.python-httpx.org/advanced/timeouts/: connect, and
read as the longest wait for one chunk), plus a cap on a whole body, which
httpx does not have; bodies are streamed
(https://www.python-httpx.org/async/#streaming-responses) so a size cap stops
the download instead of reading it whole first.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

import httpx

from lc_async_pipelines._scrub import REDACTED, scrub
from lc_async_pipelines._version import __version__
from lc_async_pipelines.errors import ConfigurationError, FetchError
from lc_async_pipelines.news._address import AddressGuard, Refused, Resolve, system_resolve
from lc_async_pipelines.news._decode import ACCEPT_ENCODING, DecodeError, Decoder

__all__ = ["FetchLimits", "Fetched", "Fetcher", "canonical_url", "shown_url"]

Expect = Literal["feed", "html"]

_FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/x-rss+xml",
        "application/x-atom+xml",
        "application/xml",
        "text/xml",
        "application/feed+json",
        "application/json",
    }
)
# Types many servers send feeds with: accepted only when the body sniffs as XML or JSON.
_FEED_SNIFFED = frozenset({"", "text/plain", "text/html"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT = {
    "feed": "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1",
    "html": "text/html, application/xhtml+xml;q=0.9, */*;q=0.1",
}
_WHITESPACE = b"\xef\xbb\xbf \t\r\n"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING = re.compile(r"(?i)^(utm_[a-z0-9_]*|fbclid)$")
_DETAIL_CHARS = 160


@dataclass(frozen=True)
class FetchLimits:
    """What one :class:`Fetcher` allows: concurrency per host, timeouts, body size.

    Attributes:
        per_host: requests in flight per host name (a URL's lowercased host,
            any port); more wait their turn.
        connect_timeout_s: seconds to open a connection.
        read_timeout_s: seconds between two reads (httpx's read timeout), and
            also the most a whole body download may take (a server dripping
            bytes cannot hold a request open for longer).
        max_bytes: the most body bytes kept per response, after content
            decoding (gzip, deflate); the download stops as soon as it is
            passed, counted as the decoder hands out pieces of 64 KiB (a
            compressed page costs at most this and one piece in memory).
        max_articles_per_source: at most this many entries read from each feed
            (in feed order), None for all.
        user_agent: the ``User-Agent`` header sent.
        allow_private_addresses: let any host reach loopback, private,
            link-local and other non-public addresses. Off, only hosts given
            to :meth:`Fetcher.trust` may (the hosts of the user's sources
            file): a feed's links and redirects are someone else's and must
            not reach this machine's or network's services (SSRF).

    Raises:
        ConfigurationError: a value out of range (the message names the field).
    """

    per_host: int = 4
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_bytes: int = 5_000_000
    max_articles_per_source: int | None = None
    user_agent: str = f"lc-async-pipelines/{__version__} (+news)"
    allow_private_addresses: bool = False

    def __post_init__(self) -> None:
        for name in ("per_host", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"FetchLimits.{name} must be an integer >= 1, got {value!r}"
                )
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigurationError(f"FetchLimits.{name} must be seconds > 0, got {value!r}")
        most = self.max_articles_per_source
        if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 1):
            raise ConfigurationError(
                f"FetchLimits.max_articles_per_source must be None or an integer >= 1, got {most!r}"
            )
        agent = self.user_agent
        if not isinstance(agent, str) or not agent.strip() or "\r" in agent or "\n" in agent:
            raise ConfigurationError(
                f"FetchLimits.user_agent must be one non-empty line, got {agent!r}"
            )
        if not isinstance(self.allow_private_addresses, bool):
            raise ConfigurationError(
                "FetchLimits.allow_private_addresses must be True or False, "
                f"got {self.allow_private_addresses!r}"
            )


@dataclass(frozen=True)
class Fetched:
    """One response read whole.

    Attributes:
        url: the final URL, after redirects.
        content_type: the ``Content-Type`` header as sent (media type and
            parameters such as ``charset``), ``""`` when absent.
        body: the body, content-decoded (gzip, deflate), at most ``max_bytes``.
        status: the HTTP status (2xx).
    """

    url: str
    content_type: str
    body: bytes
    status: int


def shown_url(url: str) -> str:
    """Return ``url`` fit to show: its ``user:password@`` part and credential-like values redacted.

    The user part is redacted whole (a token may stand there alone); the rest
    goes through :func:`lc_async_pipelines._scrub.scrub` (``token=...``, keys).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
    return scrub(url)


def canonical_url(url: str) -> str:
    """Return the form of ``url`` under which one article is recognised across feeds.

    Lowercases the scheme and host, drops the fragment, ``utm_*`` and
    ``fbclid`` query parameters (others keep their order), the default port
    (80 for http, 443 for https) and a trailing ``/`` of the path. A string
    that does not parse as a URL is returned stripped.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    # filtered as written, so the other parameters keep their encoding
    pairs = [p for p in parts.query.split("&") if p and not _TRACKING.match(p.split("=", 1)[0])]
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, userinfo + host, path, "&".join(pairs), ""))


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _looks_like_feed(body: bytes) -> bool:
    head = body[:2048].lstrip(_WHITESPACE).lower()
    if head.startswith(b"{"):
        return True
    if head.startswith((b"<!doctype html", b"<html")):
        return False
    return head.startswith(b"<?xml") or any(t in head for t in (b"<rss", b"<feed", b"<rdf:rdf"))


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lstrip(_WHITESPACE).lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _detail(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return scrub(text)[:_DETAIL_CHARS]


async def _decoded(response: httpx.Response, decoder: Decoder) -> AsyncIterator[bytes]:
    """The body's bytes, decoded here from the raw stream in small pieces (see ``_decode``)."""
    if response.is_stream_consumed:  # a body given whole (a mock transport): httpx decoded it
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    async for raw in response.aiter_raw():
        for piece in decoder.decode(raw):
            yield piece
    for piece in decoder.flush():
        yield piece


def _seconds(value: float) -> str:
    return f"{value:g}"


class Fetcher:
    """An ``httpx.AsyncClient`` wrapper: per-host semaphores, timeouts, a size cap, a type check.

    Use it as an async context manager, or call :meth:`aclose` when done.
    Redirects are followed (the client's ``max_redirects``, httpx's 20; the
    per-host slot taken is the first URL's host). One instance may be shared
    by any number of tasks on one event loop.

    Every request, each redirect's too, is refused when its host resolves to a
    loopback, private, link-local or otherwise non-public address, unless the
    host was given to :meth:`trust` or ``limits.allow_private_addresses`` is
    set; the address connected to is checked again before the body is read
    (DNS rebinding). See :mod:`lc_async_pipelines.news._address`.

    Args:
        limits: the :class:`FetchLimits`; its timeouts apply to every request,
            an injected client's too.
        client: an ``httpx.AsyncClient`` to send through (tests inject one over
            ``httpx.MockTransport``); the caller closes it. Without it, one is
            built and :meth:`aclose` closes it.
        resolve: ``async (host, port) -> [IP address, ...]`` for the address
            check. Default: the system resolver for the built client; an
            injected client's requests are checked only when it is given.
    """

    def __init__(
        self,
        limits: FetchLimits = FetchLimits(),
        *,
        client: httpx.AsyncClient | None = None,
        resolve: Resolve | None = None,
    ) -> None:
        self.limits = limits
        self._owned = client is None
        guarded = self._owned or resolve is not None
        self._guard = AddressGuard(
            resolve or system_resolve,
            allow_private=limits.allow_private_addresses or not guarded,
            # behind a proxy the address connected to is the proxy's
            check_peer=not (self._owned and getproxies()),
            timeout_s=limits.connect_timeout_s,
        )
        self._timeout = httpx.Timeout(
            connect=limits.connect_timeout_s,
            read=limits.read_timeout_s,
            write=limits.read_timeout_s,
            pool=None,  # waiting for a pooled connection is bounded by the semaphores
        )
        self._client = client or httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=True,
            headers={"User-Agent": limits.user_agent},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, when this fetcher built it."""
        if self._owned:
            await self._client.aclose()

    def trust(self, urls: Iterable[str]) -> None:
        """Let the hosts of ``urls`` (any port) reach non-public addresses.

        Give it the URLs the user wrote (a sources file): a feed on this
        machine or the local network is the user's choice, its links to
        other local hosts are not. Unparseable URLs are skipped.
        """
        hosts = []
        for url in urls:
            try:
                hosts.append(urlsplit(url).hostname or "")
            except ValueError:
                continue
        self._guard.trust(hosts)

    @asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        semaphore = self._hosts.get(host)
        if semaphore is None:
            semaphore = self._hosts[host] = asyncio.Semaphore(self.limits.per_host)
        async with semaphore:
            yield

    async def get(self, url: str, *, expect: Expect) -> Fetched:
        """GET ``url`` and read its body whole, checked against what was expected.

        Args:
            url: an ``http(s)://`` URL.
            expect: ``"feed"`` accepts XML, RSS, Atom and JSON types, and
                ``text/plain`` or ``text/html`` (or no type) only when the body
                starts like XML or JSON; ``"html"`` accepts ``text/html`` and
                ``application/xhtml+xml`` (or no type, when the body starts
                like HTML).

        Returns:
            The :class:`Fetched` response (2xx).

        Raises:
            FetchError: with ``url`` scrubbed and a one-line ``cause``:
                ``"not http(s)"``, ``"HTTP 404"`` (``status`` set),
                ``"timed out after 15 s"``, ``"connection failed (...)"``,
                ``"larger than 5000000 bytes"``, ``"not HTML (image/png)"``,
                ``"not a feed (image/png)"``, ``"redirect loop (...)"``,
                ``"refused: a loopback address (127.0.0.1), ..."``.
        """
        shown = shown_url(url)
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            raise FetchError(shown, "not a valid URL") from None
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise FetchError(shown, "not http(s)")
        limits = self.limits
        headers = {
            "User-Agent": limits.user_agent,
            "Accept": _ACCEPT[expect],
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        async with self._slot(host):
            try:
                return await self._follow(url, headers, shown, expect)
            except Refused as exc:
                raise FetchError(shown, exc.cause) from None
            except httpx.ConnectTimeout:
                cause = f"timed out after {_seconds(limits.connect_timeout_s)} s connecting"
                raise FetchError(shown, cause) from None
            except (httpx.TimeoutException, TimeoutError):  # httpx's per read, or the body's cap
                cause = f"timed out after {_seconds(limits.read_timeout_s)} s"
                raise FetchError(shown, cause) from None
            except httpx.TooManyRedirects:
                raise FetchError(shown, "redirect loop (too many redirects)") from None
            except httpx.UnsupportedProtocol:  # a redirect to ftp:// and the like
                raise FetchError(shown, "not http(s)") from None
            except httpx.InvalidURL:
                raise FetchError(shown, "not a valid URL") from None
            except (DecodeError, httpx.DecodingError) as exc:
                raise FetchError(shown, f"cannot decode the body ({_detail(exc)})") from None
            except httpx.TransportError as exc:  # connect, read, write, protocol errors
                raise FetchError(shown, f"connection failed ({_detail(exc)})") from None
            except httpx.HTTPError as exc:
                raise FetchError(shown, f"request failed ({_detail(exc)})") from None

    async def _follow(
        self, url: str, headers: dict[str, str], shown: str, expect: Expect
    ) -> Fetched:
        # Redirects one hop at a time (httpx's next_request), so each hop's
        # address is checked before it is sent.
        request = self._client.build_request("GET", url, headers=headers, timeout=self._timeout)
        for _ in range(self._client.max_redirects + 1):
            await self._guard.before(request.url)
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                self._guard.after(response)
                following = response.next_request
                if following is None:
                    return await self._read(response, shown, expect)
            finally:
                await response.aclose()
            request = following
        raise httpx.TooManyRedirects("too many redirects", request=request)

    async def _read(self, response: httpx.Response, shown: str, expect: Expect) -> Fetched:
        status = response.status_code
        if not 200 <= status < 300:
            raise FetchError(shown, f"HTTP {status}", status=status)
        content_type = response.headers.get("content-type", "")
        media = _media_type(content_type)
        sniff = False
        if expect == "feed":
            if media not in _FEED_TYPES and not media.endswith(("+xml", "+json")):
                if media not in _FEED_SNIFFED:
                    raise FetchError(shown, f"not a feed ({media})", status=status)
                sniff = True
        elif media not in _HTML_TYPES:
            if media:
                raise FetchError(shown, f"not HTML ({media})", status=status)
            sniff = True
        cap = self.limits.max_bytes
        too_large = f"larger than {cap} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(shown, too_large, status=status)
        decoder = Decoder(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.limits.read_timeout_s):
            async for chunk in _decoded(response, decoder):
                size += len(chunk)
                if size > cap:
                    raise FetchError(shown, too_large, status=status)
                chunks.append(chunk)
        body = b"".join(chunks)
        if sniff:
            shown_type = media or "no content type"
            if expect == "feed" and not _looks_like_feed(body):
                raise FetchError(shown, f"not a feed ({shown_type})", status=status)
            if expect == "html" and not _looks_like_html(body):
                raise FetchError(shown, f"not HTML ({shown_type})", status=status)
        return Fetched(url=str(response.url), content_type=content_type, body=body, status=status)
