"""Which addresses a fetch may reach: public ones, and private ones only on hosts the user named.

A feed is somebody else's text: an entry's link, or a redirect, may point at
loopback, the local network or a cloud metadata service (169.254.169.254).
Fetching it is server-side request forgery (OWASP's SSRF prevention cheat
sheet, https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).
So every request (each hop of a redirect) is checked before it is sent, by
resolving its host, and the address actually connected to is checked again
before the body is read (httpcore's ``network_stream`` response extension,
``get_extra_info("server_addr")``, https://www.encode.io/httpcore/extensions/),
which also catches a name that resolves to a public address first and a
private one at connect time (DNS rebinding). The request has been sent by
then, but nothing of the answer is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpx

__all__ = ["AddressGuard", "Refused", "Resolve", "non_public_kind", "system_resolve"]

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> IP addresses`` the host resolves to; raises ``OSError`` when it does not."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(Exception):
    """A request the guard stops; ``cause`` is the one-line reason."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): the last 32 bits are IPv4.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses an IPv6 address carries, which route to them.

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``, RFC 4291
    2.5.5.1, deprecated but still parsed), NAT64 (``64:ff9b::/96``,
    ``64:ff9b:1::/48``), 6to4 (``2002::/16``) and Teredo (``2001::/32``: its
    server and client), read with Python's ``ipaddress`` properties where it
    has them.
    """
    value = int(address)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    if value >> 32 == 0 and value > 1:  # :: and ::1 are IPv6's own
        return [low]
    if any(address in net for net in _NAT64):
        return [low]
    return []


def non_public_kind(ip: str) -> str | None:
    """Return what kind of non-public address ``ip`` is (``"loopback"``...), None when public.

    An IPv6 address that carries an IPv4 one (:func:`embedded_ipv4`) is as
    public as the least public of the two.
    """
    address = ipaddress.ip_address(ip.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) aside
    if isinstance(address, ipaddress.IPv6Address):
        for inner in embedded_ipv4(address):
            kind = non_public_kind(str(inner))
            if kind is not None:
                return kind
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_multicast or not address.is_global:  # multicast counts as global
        return "non-public"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (``getaddrinfo``, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Refuses requests to non-public addresses unless their host is trusted.

    Args:
        resolve: how host names are resolved (tests inject a fake).
        allow_private: when True, nothing is refused.
        check_peer: check the address connected to as well (off behind an
            HTTP proxy, where that address is the proxy's).
        timeout_s: the longest wait for the resolver, seconds (the fetch's
            connect timeout); a name not resolved by then is left to the
            connection, and asked again next time.
    """

    def __init__(
        self, resolve: Resolve, *, allow_private: bool, check_peer: bool, timeout_s: float
    ) -> None:
        self._resolve = resolve
        self._allow_private = allow_private
        self._check_peer = check_peer
        self._timeout_s = timeout_s
        self._trusted: set[str] = set()
        self._verdicts: dict[tuple[str, int], str | None] = {}

    def trust(self, hosts: Iterable[str]) -> None:
        """Let these host names (any port) reach non-public addresses."""
        self._trusted.update(host.lower().strip("[]") for host in hosts if host)

    def _open(self, host: str) -> bool:
        return self._allow_private or host.lower() in self._trusted

    async def before(self, url: httpx.URL) -> None:
        """Raise :class:`Refused` when ``url``'s host resolves to a non-public address.

        A name that does not resolve passes: connecting fails on its own, and
        behind a proxy only the proxy may know the name.
        """
        host = url.host
        if self._open(host):
            return
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
        key = (host.lower(), port)
        if key not in self._verdicts:
            addresses = await self._addresses(host, port)
            if addresses is None:
                return
            self._verdicts[key] = _verdict(addresses)
        cause = self._verdicts[key]
        if cause is not None:
            raise Refused(cause)

    async def _addresses(self, host: str, port: int) -> list[str] | None:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._resolve(host, port)
        except (OSError, TimeoutError):
            return None

    def after(self, response: httpx.Response) -> None:
        """Raise :class:`Refused` when ``response`` came from a non-public address.

        Only real connections say where they went (httpcore's HTTP/1.1
        ``network_stream``); other responses pass.
        """
        if not self._check_peer or self._open(response.request.url.host):
            return
        stream = response.extensions.get("network_stream")
        if stream is None:
            return
        peer = stream.get_extra_info("server_addr")
        if not isinstance(peer, tuple) or not peer:
            return
        kind = non_public_kind(str(peer[0]))
        if kind is not None:
            raise Refused(_cause(kind, str(peer[0])))


def _verdict(addresses: list[str]) -> str | None:
    for address in addresses:
        kind = non_public_kind(address)
        if kind is not None:
            return _cause(kind, address)
    return None


def _cause(kind: str, address: str) -> str:
    return (
        f"refused: a {kind} address ({address}), and the host is not one of the sources' "
        "(--allow-private-addresses lets it)"
    )
