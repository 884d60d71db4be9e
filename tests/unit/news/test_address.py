"""The fetcher's address check (SSRF): non-public addresses only on trusted hosts, every hop."""

import asyncio

import httpx
import pytest

from lc_async_pipelines.errors import ConfigurationError, FetchError
from lc_async_pipelines.news._address import non_public_kind
from lc_async_pipelines.news._fetch import Fetcher, FetchLimits

PAGE = b"<!DOCTYPE html><html><head><title>x</title></head><body><p>hi</p></body></html>"
DNS = {
    "news.example": ["93.184.216.34"],
    "intranet.example": ["10.1.2.3"],
    "both.example": ["93.184.216.34", "192.168.0.7"],  # one private answer is enough
    "my-feeds.lan": ["192.168.0.9"],
}


async def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"no such host {host}")
    return DNS[host]


class Server:
    """A MockTransport handler: pages everywhere, redirects on /go?to=URL; it notes each host."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        if request.url.path == "/go":
            return httpx.Response(302, headers={"location": request.url.params["to"]})
        return httpx.Response(200, headers={"content-type": "text/html"}, content=PAGE)


def fetcher(server: Server, **limits) -> Fetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return Fetcher(FetchLimits(**limits), client=client, resolve=resolve)


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "non-public"),  # multicast
        # IPv6 forms that carry an IPv4 address (issue 22, point 11)
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::a9fe:a9fe", "link-local"),  # ::169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::c0a8:101", "private"),  # local-use NAT64 of 192.168.1.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::808:808", None),  # NAT64 of a public address stays public
        ("2002:808:808::1", None),  # 6to4 of a public address
    ],
)
def test_kinds_of_address(ip, kind):
    assert non_public_kind(ip) == kind


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://intranet.example/a", "a private address (10.1.2.3)"),
        ("http://both.example/a", "a private address (192.168.0.7)"),
        ("http://127.0.0.1:6379/", "a loopback address (127.0.0.1)"),
        ("http://[::1]/", "a loopback address (::1)"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address (169.254.169.254)"),
        ("http://[::ffff:7f00:1]/", "a loopback address (::ffff:7f00:1)"),
        ("http://[::127.0.0.1]/", "a loopback address (::7f00:1)"),
        ("http://[64:ff9b::7f00:1]/", "a loopback address (64:ff9b::7f00:1)"),
    ],
)
async def test_a_link_to_a_non_public_address_is_refused_before_it_is_sent(url, cause):
    server = Server()
    async with fetcher(server) as f:
        with pytest.raises(FetchError) as caught:
            await f.get(url, expect="html")
    assert caught.value.cause.startswith(f"refused: {cause}")
    assert "--allow-private-addresses" in caught.value.cause
    assert server.hosts == []  # nothing went out


async def test_a_redirect_to_a_non_public_address_is_refused_at_that_hop():
    server = Server()
    url = "http://news.example/go?to=http://169.254.169.254/latest/meta-data/"
    async with fetcher(server) as f:
        with pytest.raises(FetchError) as caught:
            await f.get(url, expect="html")
    assert caught.value.cause.startswith("refused: a link-local address (169.254.169.254)")
    assert caught.value.url == url  # named by the URL the feed gave
    assert server.hosts == ["news.example"]  # the metadata service never asked


async def test_public_hosts_and_redirects_between_them_pass():
    server = Server()
    async with fetcher(server) as f:
        got = await f.get("http://news.example/go?to=http://news.example/b", expect="html")
    assert got.url == "http://news.example/b"
    assert server.hosts == ["news.example", "news.example"]


async def test_a_trusted_host_may_be_private_but_its_redirects_elsewhere_may_not():
    server = Server()
    async with fetcher(server) as f:
        f.trust(["http://my-feeds.lan:8080/feed.xml", "http://127.0.0.1:9000/rss", "not a url ["])
        assert (await f.get("http://my-feeds.lan/a", expect="html")).status == 200  # any port
        assert (await f.get("http://127.0.0.1:9000/b", expect="html")).status == 200
        with pytest.raises(FetchError) as caught:
            await f.get("http://my-feeds.lan/go?to=http://intranet.example/x", expect="html")
    assert caught.value.cause.startswith("refused: a private address (10.1.2.3)")
    assert "intranet.example" not in server.hosts


async def test_allow_private_addresses_lets_everything_through():
    server = Server()
    async with fetcher(server, allow_private_addresses=True) as f:
        got = await f.get("http://news.example/go?to=http://intranet.example/x", expect="html")
    assert got.url == "http://intranet.example/x"
    assert server.hosts == ["news.example", "intranet.example"]


async def test_a_name_that_does_not_resolve_is_left_to_the_connection():
    server = Server()
    async with fetcher(server) as f:
        got = await f.get("http://unknown.example/a", expect="html")
    assert got.status == 200


async def test_a_resolver_that_hangs_is_given_up_at_the_connect_timeout_and_asked_again():
    asked = []

    async def hangs(host: str, port: int) -> list[str]:
        asked.append(host)
        await asyncio.Event().wait()  # never answers
        return []

    server = Server()
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    async with Fetcher(FetchLimits(connect_timeout_s=0.05), client=client, resolve=hangs) as f:
        for _ in range(2):
            assert (await f.get("http://slow-dns.example/a", expect="html")).status == 200
    assert asked == ["slow-dns.example", "slow-dns.example"]  # no verdict kept from a timeout


async def test_the_address_connected_to_is_checked_too():
    """DNS rebinding: the check resolved a public address, the connection went elsewhere."""

    class Stream:
        def get_extra_info(self, name):
            return ("10.9.8.7", 80) if name == "server_addr" else None

    def handler(request):
        return httpx.Response(
            200, headers={"content-type": "text/html"}, content=PAGE,
            extensions={"network_stream": Stream()},
        )  # fmt: skip

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Fetcher(client=client, resolve=resolve) as f:
        with pytest.raises(FetchError) as caught:
            await f.get("http://news.example/a", expect="html")
    assert caught.value.cause.startswith("refused: a private address (10.9.8.7)")


async def test_an_injected_client_without_a_resolver_is_not_checked():
    server = Server()
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    async with Fetcher(client=client) as f:
        assert (await f.get("http://127.0.0.1/a", expect="html")).status == 200


def test_allow_private_addresses_must_be_a_bool():
    with pytest.raises(ConfigurationError, match="allow_private_addresses"):
        FetchLimits(allow_private_addresses="yes")  # type: ignore[arg-type]
