"""The HTTP transport under the batched client: chat calls go to the session, others out."""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import openai

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.runner.batch._files import LineResult, failed
from lc_async_pipelines.runner.retry import is_transient

__all__ = ["ENDPOINTS", "Interceptor", "as_result", "http_module"]

ENDPOINTS = {"/chat/completions": "/v1/chat/completions", "/responses": "/v1/responses"}


def as_result(exc: BaseException) -> LineResult:
    """A failure of the files or batches API, as the error response of each call it concerns."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        inner = body.get("error")
        error: dict[str, Any] = inner if isinstance(inner, dict) else body
        message = f"Batch API: {error_text(exc)}"
        return LineResult(exc.status_code, {"error": {**error, "message": message}})
    status = 503 if is_transient(exc) else 500
    return failed(status, f"Batch API: {type(exc).__name__}: {error_text(exc)}", "batch_api_error")


class Interceptor:
    """The HTTP transport of the batched client: chat requests go to the session, others out."""

    def __init__(
        self,
        route: Callable[[str, dict[str, Any]], Awaitable[LineResult | None]],
        send_direct: Callable[[Any], Awaitable[Any]],
        send_unbatched: Callable[[Any], Awaitable[Any]],
    ) -> None:
        """Hand chat requests to ``route``; send the others with ``send_direct``.

        A chat request ``route`` answers None for (retried on its own) goes
        with ``send_unbatched``.
        """
        self.route = route
        self.send_direct = send_direct
        self.send_unbatched = send_unbatched

    async def handle_async_request(self, request: Any) -> Any:
        """Answer ``request``: from a batch when it is a chat call, else as sent."""
        path = str(request.url.path)
        endpoint = next((e for s, e in ENDPOINTS.items() if path.endswith(s)), None)
        if request.method != "POST" or endpoint is None:
            return await self.send_direct(request)
        body = json.loads(await request.aread())
        body.pop("stream", None)  # a batch line does not stream
        body.pop("stream_options", None)
        result = await self.route(endpoint, body)
        if result is None:
            return await self.send_unbatched(request)
        http = http_module(request)
        headers = {"x-request-id": f"batch-{result.body.get('id', '')}"}
        return http.Response(result.status, json=result.body, headers=headers, request=request)

    async def aclose(self) -> None:
        """Nothing to close: the clients are the session's."""
        return None


def http_module(request: Any) -> ModuleType:
    """The HTTP library of the openai SDK's request (httpx2 for openai>=3, httpx before)."""
    return importlib.import_module(type(request).__module__.partition(".")[0])
