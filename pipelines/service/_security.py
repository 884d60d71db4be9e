"""Guards in front of the routes: bearer token, body size and read deadline, strict JSON.

Every guard that can refuse a request before its body is parsed is an ASGI
middleware, so it answers before FastAPI reads or validates anything:

- :class:`BearerAuth`: with a token set, every path but the page and
  ``/healthz`` needs ``Authorization: Bearer <token>`` (401 otherwise, even for
  a body that would not parse: FastAPI decodes a JSON body *before* it solves a
  router's dependencies, so a dependency would answer 422 first and describe
  the schema to an unauthenticated client).
- :class:`BodyDeadline`: the body must arrive within a deadline (408).
- :class:`BodyLimit`: the body must fit a size limit (413).

:class:`StrictJSONRoute` makes the ``/v1`` routes take JSON only (415 for
another content type) and strict JSON only (``NaN``, ``Infinity``, lone
surrogates, undecodable bytes and nesting too deep to decode are a 422, not a
500). :func:`short_validation_errors` answers a 422 without echoing more than
a short excerpt of the input.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "OPEN_PATHS",
    "BearerAuth",
    "BodyDeadline",
    "BodyLimit",
    "StrictJSONRequest",
    "StrictJSONRoute",
    "authorized",
    "excerpt",
    "short_validation_errors",
]

OPEN_PATHS = frozenset({"/", "/healthz"})
"""Paths answered without the token (the page and the health check); all others need it."""

EXCERPT_CHARS = 100
MAX_ERRORS = 20
_UNAUTHORIZED = "missing or wrong bearer token"


def _token_matches(header: str, token: SecretStr) -> bool:
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    # Bytes: compare_digest refuses non-ASCII str, and a header may hold any latin-1.
    return scheme.lower() == "bearer" and secrets.compare_digest(
        given.encode("latin-1", "replace"), expected
    )


def authorized(request: Request) -> None:
    """Check the bearer token when the service has one (a FastAPI dependency).

    :class:`BearerAuth` checks it first, before the body is read; this
    dependency keeps the ``/v1`` router guarded wherever it is mounted.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is
            missing or wrong.
    """
    token: SecretStr | None = request.app.state.settings.api_token
    if token is None:
        return
    if not _token_matches(request.headers.get("authorization", ""), token):
        raise HTTPException(401, _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def _route_path(scope: Scope) -> str:
    """The path the router matches: ``path`` without the app's ``root_path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


class BearerAuth:
    """ASGI middleware: with a token, answer 401 to any request without it, before its body.

    Every path needs the token but :data:`OPEN_PATHS` (the page and
    ``/healthz``): the API, ``/docs`` and ``/openapi.json`` (the schema), and
    unknown paths, so a client without the token learns nothing, not even
    which pipelines exist.

    Args:
        app: the application behind it.
        token: the bearer token; None lets every request through.
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request to a guarded path without the right bearer token."""
        if self.token is None or scope["type"] != "http" or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if _token_matches(header.decode("latin-1"), self.token):
            await self.app(scope, receive, send)
            return
        extra = [(b"www-authenticate", b"Bearer"), (b"connection", b"close")]
        await send_json(send, 401, _UNAUTHORIZED, extra)


class BodyDeadline:
    """ASGI middleware: answer 408 when the request body does not arrive within ``timeout_s``.

    The deadline runs from the moment the request head has been read (the
    app is called) to the last body chunk; reads after the body (a handler
    watching for the client's disconnect) are not limited. The 408 says
    ``Connection: close``, so the server drops the slow client.

    Args:
        app: the application behind it.
        timeout_s: seconds the whole body may take.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, its body reads bounded by the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def timed() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {self.timeout_s:g} s",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed, send)


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
            await send_json(send, 413, self._detail(int(declared)), [(b"connection", b"close")])
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self._detail(seen), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)

    def _detail(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.limit} bytes"


async def send_json(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole ``{"detail": ...}`` JSON response from ASGI middleware."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number"
    raise ValueError(msg)


class StrictJSONRequest(Request):
    r"""A request whose JSON body must be strict JSON, decoded to text any response can hold.

    ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's ``json`` takes),
    invalid UTF-8, lone surrogates (``"\ud800"``), integers too long to
    convert and nesting too deep to decode are a :class:`json.JSONDecodeError`,
    which FastAPI answers with a 422 ``json_invalid``.
    """

    _strict_json: Any

    async def json(self) -> Any:
        """Return the body decoded as strict JSON.

        Raises:
            json.JSONDecodeError: the body is not strict JSON, or holds text
                that cannot be encoded back as UTF-8.
        """
        if not hasattr(self, "_strict_json"):
            body = await self.body()
            try:
                value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
                # A lone surrogate decodes, but no reply could hold it as UTF-8.
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except json.JSONDecodeError:
                raise
            except UnicodeError:
                raise json.JSONDecodeError("not valid Unicode text", "", 0) from None
            except RecursionError:
                raise json.JSONDecodeError("nested too deeply", "", 0) from None
            except ValueError as exc:  # NaN, Infinity; an integer too long to convert
                raise json.JSONDecodeError(str(exc).split(":", 1)[0][:200], "", 0) from None
            self._strict_json = value
        return self._strict_json


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() != "0")


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class StrictJSONRoute(APIRoute):
    """A route whose request body must be strict JSON sent as ``application/json``.

    A non-empty body of another content type is a 415; see
    :class:`StrictJSONRequest` for what strict means.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler: check the content type, decode JSON strictly."""
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in {"POST", "PUT", "PATCH"} and _has_body(request):
                content_type = request.headers.get("content-type", "")
                if not _is_json_media_type(content_type):
                    raise HTTPException(
                        415, "send the body as JSON: Content-Type: application/json"
                    )
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """Return ``value`` if JSON holds it in ``limit`` characters, else a short string excerpt.

    Never fails: a non-finite float, bytes, a huge integer, a lone surrogate
    or a structure too deep to encode becomes a string of at most
    ``limit`` characters and an ellipsis.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value[: limit + 1].encode("utf-8", "replace").decode("utf-8")
        return text if len(text) <= limit else text[:limit] + "…"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=repr)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return f"<{type(value).__name__}>"
    return value if len(text) <= limit else text[:limit] + "…"


def _short_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [p if isinstance(p, int) else excerpt(str(p), 40) for p in error.get("loc", ())][:12]
    short: dict[str, Any] = {
        "type": excerpt(str(error.get("type", "")), 40),
        "loc": loc,
        "msg": excerpt(str(error.get("msg", "")), 200),
        "input": excerpt(error.get("input")),
    }
    ctx = error.get("ctx")
    if isinstance(ctx, dict):
        short["ctx"] = {
            excerpt(str(k), 40): excerpt(v if isinstance(v, int | float | str) else str(v))
            for k, v in list(ctx.items())[:5]
        }
    return short


async def short_validation_errors(request: Request, exc: Exception) -> Response:
    """Answer a request that failed validation: 422, each error with a short input excerpt.

    At most :data:`MAX_ERRORS` errors, each ``input`` cut to about
    :data:`EXCERPT_CHARS` characters: a batch of 65 large inputs is not
    echoed back whole.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_short_error(dict(e)) for e in errors[:MAX_ERRORS]]}, 422)
