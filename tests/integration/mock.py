"""Run the benchmark mock server in a background thread for a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

__all__ = ["MockConfig", "mock_server"]

from benchmarks.mock_server import MockConfig, create_app


@contextmanager
def mock_server(config: MockConfig) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/stats", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base + "/v1"
    finally:
        server.should_exit = True
        thread.join(10)
