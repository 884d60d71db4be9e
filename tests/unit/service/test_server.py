"""The server under slow clients, over real sockets: a uvicorn from ``configured_server`` on a
free loopback port in a thread. Every loop is bounded; outcomes, not timings, are asserted."""

import contextlib
import select
import socket
import threading
import time

import pytest

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.service import ServiceSettings, create_app, serve
from lc_async_pipelines.service._server import configured_server, is_loopback
from tests.unit.fakes import cycling_llm

GET = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@contextlib.contextmanager
def running(**limits):
    """Serve an app with these limits on a free loopback port; yield the port."""
    settings = ServiceSettings(**limits)
    app = create_app(cycling_llm("A story. The end."), settings=settings)
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


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    return sock


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
            app, host="0.0.0.0", port=8000, settings=ServiceSettings(api_token="t0k3n")
        )
    allowed = ServiceSettings.from_env({"PIPELINES_ALLOW_OPEN": "1"}, env_file=None)
    assert configured_server(app, host="0.0.0.0", port=8000, settings=allowed) is not None
    assert configured_server(app, host="127.0.0.1", port=8000, settings=open_settings) is not None
    guarded = ServiceSettings(api_token="t0k3n")
    guarded_app = create_app(cycling_llm("x"), settings=guarded)
    assert configured_server(guarded_app, host="0.0.0.0", port=8000, settings=guarded) is not None
