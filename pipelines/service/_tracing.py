"""ASGI: each request in a server span that continues the caller's W3C ``traceparent``.

With telemetry off (:func:`lc_async_pipelines.telemetry.current` None) a
request passes straight through. With it on, the incoming ``traceparent`` and
``tracestate`` headers are read by OpenTelemetry's propagator (never parsed
here), so the request's run, item and model spans join the caller's trace.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lc_async_pipelines import telemetry

__all__ = ["TraceContext"]


class TraceContext:
    """ASGI middleware: a ``pipelines.service.request`` span per HTTP request, when tracing."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request inside its span (or as is, with telemetry off)."""
        tel = telemetry.current()
        if tel is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tel.continued(headers, scope["method"], scope["path"]) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, sending)
