"""Guards in front of the routes: the bearer token and the request body size limit."""

from __future__ import annotations

import json
import secrets

from fastapi import HTTPException, Request
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "authorized"]


def authorized(request: Request) -> None:
    """Check the bearer token when the service has one (a FastAPI dependency).

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is
            missing or wrong.
    """
    token: SecretStr | None = request.app.state.settings.api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    # Bytes: compare_digest refuses non-ASCII str, and a header may hold any latin-1.
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), expected):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


class BodyLimit:
    """ASGI middleware: answer 413 to a request body over ``limit`` bytes, declared or streamed.

    Args:
        app: the application behind it.
        limit: the largest body accepted, bytes.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body; refuse it once it is too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_json(send, 413, self._detail(int(declared)))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self._detail(seen))
            return message

        await self.app(scope, counted, send)

    def _detail(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.limit} bytes"


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
