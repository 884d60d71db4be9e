"""Run the benchmark mock server in a background thread for a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

__all__ = ["AnthropicMockConfig", "MockConfig", "anthropic_mock_server", "mock_server"]

from benchmarks import anthropic_mock
from benchmarks.anthropic_mock import AnthropicMockConfig
from benchmarks.mock_server import MockConfig, create_app


@contextmanager
def mock_server(config: MockConfig) -> Iterator[str]:
    """The OpenAI mock on a free loopback port; yields its base URL with ``/v1``."""
    with _serving(create_app(config)) as base:
        yield base + "/v1"


@contextmanager
def anthropic_mock_server(config: AnthropicMockConfig) -> Iterator[str]:
    """The Anthropic mock on a free loopback port; yields its base URL (no ``/v1``)."""
    with _serving(anthropic_mock.create_app(config)) as base:
        yield base


@contextmanager
def _serving(app: object) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")  # type: ignore[arg-type]
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
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
