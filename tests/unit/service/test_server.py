"""The server under slow clients, over real sockets: a uvicorn from ``configured_server`` on a
free loopback port in a thread. Every loop is bounded; outcomes, not timings, are asserted."""

import asyncio
import contextlib
import json
import logging
import select
import socket
import threading
import time

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.service import ServiceSettings, create_app, serve
from lc_async_pipelines.service._server import configured_server, is_loopback
from tests.unit.fakes import cycling_llm

GET = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@contextlib.contextmanager
def running(llm=None, **limits):
    """Serve an app with these limits on a free loopback port; yield the port."""
    settings = ServiceSettings(**limits)
    app = create_app(llm or cycling_llm("A story. The end."), settings=settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = configured_server(app, host="127.0.0.1", port=port, settings=settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """Connect from ``source`` (any 127.x.y.z address is this machine: another client)."""
    return socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))


def closed_by_server(sock: socket.socket, wait_s: float = 15) -> bool:
    """Read until the server closes the connection (True) or ``wait_s`` passes (False)."""
    sock.settimeout(wait_s)
    try:
        while chunk := sock.recv(65536):
            del chunk
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def read_response(sock: socket.socket) -> bytes:
    """Read one small response (headers and a body read up to its Content-Length)."""
    data = b""
    for _ in range(100):
        data += sock.recv(65536)
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
    return data


def trickle(sock: socket.socket, data: bytes, pause_s: float = 0.05) -> bool:
    """Send ``data`` a byte at a time; return True once the server has closed the connection."""
    for byte in data:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return True
        time.sleep(pause_s)
    return False


def test_a_silent_connection_is_closed_at_the_header_deadline():
    with running(header_timeout_s=0.3) as port, connect(port) as sock:
        assert closed_by_server(sock)


def test_a_trickled_request_head_is_closed():
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 400
    with running(header_timeout_s=0.5, keep_alive_s=60) as port, connect(port) as sock:
        assert trickle(sock, head), "the server held a trickled head for 20 s"


def test_a_trickled_second_head_on_a_kept_alive_connection_is_closed():
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 400
    with running(header_timeout_s=0.5, keep_alive_s=60) as port, connect(port) as sock:
        sock.sendall(GET)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        assert trickle(sock, head)


def test_an_idle_kept_alive_connection_is_closed():
    with running(keep_alive_s=1, header_timeout_s=60) as port, connect(port) as sock:
        sock.sendall(GET)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        assert closed_by_server(sock)


def test_a_trickled_body_gets_a_408_and_the_connection_is_closed():
    body = b'{"input": "' + b"a" * 400 + b'"}'
    head = (
        b"POST /v1/pipelines/story/invoke HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with running(body_timeout_s=0.5, header_timeout_s=60) as port, connect(port) as sock:
        sock.sendall(head)
        assert trickle(sock, body), "the server held a trickled body for 20 s"
        # trickle() saw the close; the 408 came before it (read what is left, if anything).
    with running(body_timeout_s=0.5, header_timeout_s=60) as port, connect(port) as sock:
        sock.sendall(head + body[:10])
        response = b""
        sock.settimeout(15)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                response += chunk
    assert response.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in response.lower()
    assert b"did not arrive within 0.5 s" in response


def test_connections_past_the_cap_get_a_503_and_are_closed():
    with running(max_connections=2, header_timeout_s=60) as port:
        idle = [connect(port), connect(port)]
        time.sleep(0.2)  # let the server accept them (not an assertion on time)
        with connect(port) as third:
            third.sendall(GET)
            refused = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := third.recv(65536):
                    refused += chunk
        for sock in idle:
            sock.close()
        served = None
        for _ in range(100):  # the server notices the closes on its next turns
            with connect(port) as sock:
                sock.sendall(GET)
                response = read_response(sock)
            if response.startswith(b"HTTP/1.1 200 "):
                served = response
                break
            time.sleep(0.05)
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"too many open connections" in refused
    assert b"x-content-type-options: nosniff" in refused
    assert served is not None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_token_or_allow_open():
    open_settings = ServiceSettings()
    app = create_app(cycling_llm("x"), settings=open_settings)
    with pytest.raises(ConfigurationError, match="without PIPELINES_API_TOKEN") as refused:
        serve(app, host="0.0.0.0", port=0, settings=open_settings)
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigurationError):
        configured_server(app, host="192.168.1.5", port=8000, settings=open_settings)
    # A token the app does not enforce does not count.
    with pytest.raises(ConfigurationError):
        configured_server(
            app,
            host="0.0.0.0",
            port=8000,
            settings=ServiceSettings(api_token="t0k3n-0123456789abc"),
        )
    allowed = ServiceSettings.from_env({"PIPELINES_ALLOW_OPEN": "1"}, env_file=None)
    assert configured_server(app, host="0.0.0.0", port=8000, settings=allowed) is not None
    assert configured_server(app, host="127.0.0.1", port=8000, settings=open_settings) is not None
    guarded = ServiceSettings(api_token="t0k3n-0123456789abc")
    guarded_app = create_app(cycling_llm("x"), settings=guarded)
    assert configured_server(guarded_app, host="0.0.0.0", port=8000, settings=guarded) is not None


def test_one_client_holding_connections_without_a_head_does_not_lock_out_others():
    # Slowloris from 127.0.0.2: once its connections have stalled, more from it are refused,
    # while a health check from another address is still answered (before: 503 for all).
    with running(max_pending_per_client=3, max_connections=50, header_timeout_s=60) as port:
        silent = [connect(port, "127.0.0.2") for _ in range(3)]
        refused = b""
        for _ in range(200):  # until the first three have stalled (a second without a head)
            with connect(port, "127.0.0.2") as extra:
                extra.sendall(GET)
                with contextlib.suppress(ConnectionResetError):
                    refused = read_response(extra)
            if refused.startswith(b"HTTP/1.1 503 "):
                break
            time.sleep(0.05)
        with connect(port) as health:
            health.sendall(GET)
            answered = read_response(health)
        for sock in silent:
            sock.close()
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert answered.startswith(b"HTTP/1.1 200 ")


SEEN = {"chunks": 0, "closed": 0}
_TCP_ESTABLISHED = 1  # linux/tcp_states.h


def _tcp_state(sock: socket.socket) -> int:
    """The connection's TCP state (``tcpi_state``, the first byte of Linux's TCP_INFO)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


class _Endless(BaseChatModel):
    """A model that streams 10 KB chunks until it is cancelled, and says so in :data:`SEEN`.

    Module state, not a field: the service works on a copy of the model.
    """

    @property
    def _llm_type(self) -> str:
        return "endless"

    def _generate(self, *args, **kwargs):
        raise NotImplementedError

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        try:
            while True:
                SEEN["chunks"] += 1
                text = "word " * 2_000
                if run_manager is not None:
                    await run_manager.on_llm_new_token(text)
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
                await asyncio.sleep(0.005)
        finally:
            SEEN["closed"] += 1


def test_a_stream_client_that_stops_reading_is_dropped_and_its_model_call_cancelled():
    # Before: the kernel's autotuned send buffer took 2.8 MB, then a plain close waited for
    # the client to read it: the connection stayed open. Now the send times out soon, the
    # model call is cancelled and the connection is reset with what was queued.
    SEEN.update(chunks=0, closed=0)
    model = _Endless()
    body = json.dumps({"input": "a topic"}).encode()
    head = (
        b"POST /v1/pipelines/story/stream HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with running(model, send_timeout_s=0.5, header_timeout_s=60) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(head + body)
        # The model call ends before the server resets the connection: read only after the
        # reset (TCP_INFO's state leaves ESTABLISHED without draining what is queued), or the
        # read itself would drain the queue first on a loaded machine.
        for _ in range(600):  # bounded: the send timeout is 0.5 s
            if SEEN["closed"] and _tcp_state(sock) != _TCP_ESTABLISHED:
                break
            time.sleep(0.05)
        received = 0
        sock.settimeout(15)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        sock.close()
    assert SEEN["closed"] == 1 and SEEN["chunks"] > 0, SEEN
    # Only what the client's own 4 KB buffer held: the server's queue went with the reset
    # (before: 2.8 MB were queued, and delivered once the client read again).
    assert received < 64_000, f"{received} bytes stayed queued for a client that did not read"


def test_the_access_log_has_no_query_string(caplog):
    caplog.set_level(logging.INFO, logger="lc_async_pipelines.service.access")
    with running() as port, connect(port) as sock:
        sock.sendall(b"GET /healthz?token=s3cr3t-query-value HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(".access")]
    assert any(line.endswith("GET /healthz 200") for line in lines), lines
    assert "s3cr3t-query-value" not in caplog.text


@pytest.mark.parametrize("token", ["ab", "x" * 15])
def test_a_short_token_is_refused_at_start_without_showing_it(token):
    with pytest.raises(ConfigurationError) as refused:
        ServiceSettings.from_env({"PIPELINES_API_TOKEN": token}, env_file=None)
    message = str(refused.value)
    assert message.startswith("PIPELINES_API_TOKEN is not valid: must be at least 16 characters")
    assert token not in message and "\n" not in message
    assert ServiceSettings.from_env({"PIPELINES_API_TOKEN": "x" * 16}, env_file=None).api_token


def test_a_bad_setting_is_one_line_naming_the_variable():
    with pytest.raises(
        ConfigurationError, match=r"^PIPELINES_MAX_CONNECTIONS is not valid: .*integer"
    ):
        ServiceSettings.from_env({"PIPELINES_MAX_CONNECTIONS": "lots"}, env_file=None)


def test_at_the_connection_cap_a_stalled_connection_makes_room_for_a_new_one():
    with running(max_connections=3, max_pending_per_client=50, header_timeout_s=60) as port:
        silent = [connect(port, "127.0.0.2") for _ in range(3)]
        answered = b""
        for _ in range(200):  # refused (503) until one of the three has stalled
            with connect(port) as health:
                health.sendall(GET)
                with contextlib.suppress(ConnectionResetError):
                    answered = read_response(health)
            if answered.startswith(b"HTTP/1.1 200 "):
                break
            time.sleep(0.05)
        evicted = sum(closed_by_server(sock, wait_s=0.5) for sock in silent)
        for sock in silent:
            sock.close()
    assert answered.startswith(b"HTTP/1.1 200 ")
    assert evicted >= 1


def test_a_burst_of_connections_from_one_client_is_served():
    # 20 at once from one address: none has stalled, and 20 is under 8 x the cap of 3.
    with running(max_pending_per_client=3, header_timeout_s=60) as port:
        burst = [connect(port) for _ in range(20)]
        for sock in burst:
            sock.sendall(GET)
        answers = [read_response(sock) for sock in burst]
        for sock in burst:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
