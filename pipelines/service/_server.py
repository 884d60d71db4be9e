"""Run the app under uvicorn with limits that bound what slow or hostile clients can hold.

What uvicorn bounds by itself, and what it does not (read in its source,
0.54, h11 and httptools protocols alike):

- ``timeout_keep_alive`` closes a connection idle *between* requests, but the
  timer is cancelled by the first byte received, and no timer runs while a
  request head is being read: a client that connects and sends nothing, or
  one byte a second, holds its connection for ever. Nothing bounds the body
  either (an ASGI app only sees the body as it calls ``receive``).
- ``limit_concurrency`` answers 503 to a *request* once that many
  connections or tasks exist; a connection that never completes its head is
  never answered, and still counts.
- ``h11_max_incomplete_event_size`` (16 KiB) bounds the size of a head, not
  its time.

So here, without touching uvicorn's internals:

- every connection goes through :class:`_GuardedConnection`, an
  :class:`asyncio.Protocol` wrapping uvicorn's own (``Config(http=...)``
  takes a protocol class): a connection from a client address that already
  holds ``max_pending_per_client`` connections stalled without a complete
  request head (waiting :data:`_STALL_S` or more: a burst of fresh
  connections is not stalled), or :data:`_BURST` times that many waiting at
  all, is answered 503 and closed at once; past
  ``max_connections`` open connections the longest-stalled one is closed to
  make room, or, with none stalled, the new one gets the 503. So a slowloris
  client cannot take the connections health checks need. A connection must
  complete a request head within ``header_timeout_s`` of opening, or of its previous
  response, or it is closed. The wrapper learns that a head is complete
  when the app is called: it puts itself in the lifespan state uvicorn
  copies into each request's ``scope["state"]``, and :class:`_HeadDeadlines`
  (the outermost ASGI layer) tells it when a request starts and its
  response ends;
- a stream's client that stops reading: each connection's kernel send
  buffer is set to :data:`_SEND_BUFFER_BYTES` (Linux autotunes it up to
  4 MB, which held 2.8 MB of a stalled stream for minutes before any send
  blocked), so a send blocks soon and sse-starlette's ``send_timeout``
  fires; the stream's model call is then cancelled with the stream, and the
  connection is aborted (a plain close would wait for ever to flush what
  the client never reads);
- the access log (one line per request, ``lc_async_pipelines.service.access``)
  is ours: method, path without its query string (a ``?token=`` stays out
  of logs), status; uvicorn's own, which logs the query, is off;
- the body must arrive within ``body_timeout_s`` of the head
  (:class:`~lc_async_pipelines.service._security.BodyDeadline`: 408, then
  the connection is closed);
- on SIGTERM (uvicorn's graceful shutdown) :class:`_Server` sets the state's
  ``shutting_down``: running invokes, streams and batches get
  ``shutdown_grace_s`` to finish, then a 503 or an ``error`` event
  ``ServerShuttingDown``; uvicorn's own ``timeout_graceful_shutdown`` (the
  grace plus 5 s) is the backstop.

Responses uvicorn writes itself (400 for a request it cannot parse, 503 past
``limit_concurrency``, 500 for an app that fails before its response starts)
do not pass through the app, so they lack its security headers; the
connection cap's 503 carries them, with the policy ``default-src 'none'``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import socket
import struct
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from sse_starlette.sse import SendTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.service._settings import ServiceSettings

__all__ = ["bind", "check_exposure", "configured_server", "is_loopback", "serve"]

log = logging.getLogger("lc_async_pipelines.service")
access_log = logging.getLogger("lc_async_pipelines.service.access")

_HOOK = "lc_async_pipelines.service.connection"
_BACKSTOP_S = 5  # uvicorn cancels what is left this long after the grace
_SEND_BUFFER_BYTES = 64 * 1024
_STALL_S = 1.0
_BURST = 8  # fresh connections one address may open at once: this many times the stalled cap
"""A connection without a complete request head this long has stalled (a client's burst has not)."""
"""Kernel send buffer of each connection (Linux doubles it): a stream's event is a few KB."""
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 25\r\n"
    b"connection: close\r\n"
    b"retry-after: 1\r\n"
    b"content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n"
    b"x-frame-options: DENY\r\n"
    b"x-content-type-options: nosniff\r\n"
    b"referrer-policy: no-referrer\r\n"
    b"\r\n"
    b"too many open connections"
)


def is_loopback(host: str) -> bool:
    """Return True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_exposure(host: str, token_set: bool, allow_open: bool) -> None:
    """Refuse to bind beyond loopback without a token, unless told to.

    Raises:
        ConfigurationError: ``host`` is not loopback, no token is set and
            ``allow_open`` is False.
    """
    if token_set or allow_open or is_loopback(host):
        return
    msg = (
        f"refusing to serve on {host or 'every interface'!r} without PIPELINES_API_TOKEN: "
        "set a token, bind to 127.0.0.1, or set PIPELINES_ALLOW_OPEN=1"
    )
    raise ConfigurationError(msg)


class _GuardedConnection(asyncio.Protocol):
    """One connection: uvicorn's protocol inside; connection caps and a head deadline outside.

    Built by uvicorn with its protocol's keyword arguments, which are passed
    on to ``inner`` with a per-connection copy of ``app_state`` holding this
    object under :data:`_HOOK`. ``pending`` holds the connections waiting for
    a request head, oldest first, with the loop time they began to wait.
    """

    inner: Callable[..., asyncio.Protocol]
    settings: ServiceSettings
    live: set[_GuardedConnection]
    pending: dict[_GuardedConnection, float]

    def __init__(self, *, app_state: dict[str, Any], **kwargs: Any) -> None:
        self._inner = self.inner(app_state={**app_state, _HOOK: self}, **kwargs)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse the connection past either cap; else start the head deadline and pass it on."""
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        now = self._loop.time()
        stalled, pending = self._pending_from(self._client, now)
        cap = self.settings.max_pending_per_client
        if (
            stalled >= cap
            or pending >= _BURST * cap
            or (len(self.live) >= self.settings.max_connections and not self._evict_stalled(now))
        ):
            self._refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_BUSY)
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER_BYTES)
        self.live.add(self)
        self.response_finished()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and stop its deadline."""
        self.live.discard(self)
        self._disarm()
        if not self._refused:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_started(self) -> None:
        """A request head is complete (the app was called): stop the head deadline."""
        self._disarm()

    def response_finished(self) -> None:
        """A response has ended: the next request head has ``header_timeout_s`` to arrive."""
        self._disarm()
        self.pending[self] = self._loop.time()
        self._timer = self._loop.call_later(self.settings.header_timeout_s, self._expire)

    def abort(self) -> None:
        """Drop the connection at once, with what is queued for a client that stopped reading."""
        if not isinstance(self._transport, asyncio.WriteTransport):
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:  # linger 0: a reset now, not the queue kept until the client reads
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()

    def _pending_from(self, client: str, now: float) -> tuple[int, int]:
        """Connections from ``client`` waiting for a head: stalled (:data:`_STALL_S`), and all."""
        waits = [now - since for c, since in self.pending.items() if c._client == client]
        return sum(wait >= _STALL_S for wait in waits), len(waits)

    def _evict_stalled(self, now: float) -> bool:
        """Close the longest-waiting connection without a head if it has stalled; True if so."""
        oldest = next(iter(self.pending), None)
        if oldest is None or now - self.pending[oldest] < _STALL_S:
            return False
        self.live.discard(oldest)
        oldest._expire()
        return True

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending.pop(self, None)

    def _expire(self) -> None:
        self._disarm()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


def _guarded(settings: ServiceSettings) -> type[_GuardedConnection]:
    """Return a connection class for one server: its own count of live connections."""
    return type(
        "GuardedConnection",
        (_GuardedConnection,),
        {
            "inner": AutoHTTPProtocol,
            "settings": settings,
            "live": set(),
            "pending": {},
        },
    )


class _HeadDeadlines:
    """ASGI: tell the request's connection when the app starts and when its response ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        hook = state.pop(_HOOK, None) if scope["type"] == "http" and state else None
        if not isinstance(hook, _GuardedConnection):
            await self.app(scope, receive, send)
            return
        hook.request_started()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                hook.response_finished()

        try:
            await self.app(scope, receive, sending)
        except SendTimeoutError:
            status = 0
            hook.abort()
            await asyncio.sleep(0)  # uvicorn hears of the reset, and does not log an error
            log.info("dropped a stream's client that stopped reading (%s)", scope["path"])
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info("%s %s %s %s", client[0], scope["method"], scope["path"], status or "-")


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when its graceful shutdown begins."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the app's grace period, then shut down as uvicorn does."""
        self.on_shutdown()
        await super().shutdown(sockets=sockets)


def _drain(app: FastAPI, settings: ServiceSettings) -> Callable[[], None]:
    def start() -> None:
        state = getattr(app.state, "pipelines", None)
        if state is not None:
            log.info(
                "shutting down: %d inputs in flight get %g s to finish",
                state.in_flight,
                settings.shutdown_grace_s,
            )
            state.shutting_down.set()

    return start


def bind(host: str, port: int, *, settings: ServiceSettings) -> socket.socket:
    """Return a listening TCP socket on ``host``:``port`` (0: a free port), for :func:`serve`.

    Binding before the server starts turns a port in use into one clear
    error instead of uvicorn's log line and exit, and tells the caller the
    port it got.

    Raises:
        ConfigurationError: ``host`` is beyond loopback without a token or
            ``allow_open`` (as :func:`serve` refuses), the port is in use, or
            the address cannot be bound (the message names ``host``:``port``
            and the cause).
    """
    check_exposure(host, settings.api_token is not None, settings.allow_open)
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        msg = f"{host}: cannot listen ({exc.strerror or exc})"
        raise ConfigurationError(msg) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        cause = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        msg = f"{host}:{port}: cannot listen ({cause}); give another --port, or --port 0"
        raise ConfigurationError(msg) from None
    return sock


def configured_server(
    app: FastAPI, *, host: str, port: int, settings: ServiceSettings
) -> uvicorn.Server:
    """Return a uvicorn server for ``app`` with the limits of ``settings``, not yet running.

    Run it with ``.run()`` (what :func:`serve` does), or in a thread and stop
    it with ``should_exit = True``.

    Raises:
        ConfigurationError: ``host`` is beyond loopback and neither a token
            nor ``allow_open`` is set (the token counted is the one the app
            enforces, from its own settings, when it has them).
    """
    enforced = getattr(app.state, "settings", None)
    token = (enforced if isinstance(enforced, ServiceSettings) else settings).api_token
    check_exposure(host, token is not None, settings.allow_open)
    if token is None and not is_loopback(host):
        log.warning(
            "serving on %s without a token: only Host names %s are answered "
            "(PIPELINES_ALLOWED_HOSTS adds others)",
            host,
            ", ".join(settings.trusted_hosts),
        )
    config = uvicorn.Config(
        _HeadDeadlines(app),
        host=host,
        port=port,
        http=_guarded(settings),
        ws="none",
        lifespan="on",
        limit_concurrency=settings.max_connections + 1,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) + _BACKSTOP_S,
        proxy_headers=False,
        server_header=False,
        access_log=False,  # uvicorn's logs the query string: ours (_HeadDeadlines) does not
    )
    return _Server(config, _drain(app, settings))


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    settings: ServiceSettings,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, bounding what slow clients can hold.

    A connection cap (``max_connections``: more get 503), a deadline for
    each request head (``header_timeout_s``: the connection is closed) and
    body (``body_timeout_s``, enforced by the app: 408), keep-alive
    (``keep_alive_s``), and a graceful shutdown giving running requests
    ``shutdown_grace_s`` to finish. Without a token only loopback is served,
    unless ``allow_open``.

    Args:
        app: the app from :func:`~lc_async_pipelines.service.create_app`.
        host: the address to bind (``127.0.0.1`` for this machine only).
        port: the TCP port.
        settings: the limits (``ServiceSettings.from_env()`` reads them).
        sock: a socket already listening on ``host``:``port`` (:func:`bind`);
            None: uvicorn binds it.

    Raises:
        ConfigurationError: ``host`` is beyond loopback without a token or
            ``allow_open``.
    """
    server = configured_server(app, host=host, port=port, settings=settings)
    server.run(sockets=None if sock is None else [sock])
