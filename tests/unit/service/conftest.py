"""Shared helpers of the service tests: the app around a fake model, and an SSE parser."""

import json
from contextlib import asynccontextmanager

import httpx
import pytest

from lc_async_pipelines.service import ServiceSettings, create_app


def sse(text: str) -> list[tuple[str, dict]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields and fields.get("event"):
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def post_scope(path: str, *, server: tuple[str, int] = ("localhost", 80)) -> dict:
    """The ASGI scope of a JSON ``POST`` to ``path``, for tests that drive the app by hand."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"localhost")],
        "client": ("127.0.0.1", 1),
        "server": server,
        "state": {},
    }


@pytest.fixture
def app_for():
    """Return an async context manager: the app around a model, its lifespan run, and a client."""

    @asynccontextmanager
    async def make(llm, *, pipelines=None, **settings):
        app = create_app(llm, settings=ServiceSettings(**settings), pipelines=pipelines)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost"
            ) as client:
                client.app = app
                yield client

    return make
