"""A FastAPI app serving every registered pipeline: invoke, stream (SSE), batch, a page.

Endpoints (``{name}`` is a registered pipeline:
:func:`lc_async_pipelines.registry.registered_pipelines`, or those given to
:func:`create_app`):

- ``POST /v1/pipelines/{name}/invoke``: ``{"input", "max_words"?}`` in (the
  input is text, or a JSON object for a chain whose input is an object); the
  output with usage (tokens), latency and time to first token (seconds) out.
- ``POST /v1/pipelines/{name}/stream``: server-sent events: ``token``
  (``{"text", "call"}``) as the model streams, then one ``end`` (the whole
  output, usage, latency, TTFT) or one ``error`` (``{"type", "message"}``).
- ``POST /v1/pipelines/{name}/batch``: ``{"inputs": [...]}`` in; one ``result``
  event per input as it completes (``index`` says which), then ``end``.
- ``GET /v1/pipelines`` (each pipeline, its options and input schema),
  ``GET /healthz``, ``GET /`` (the page), ``GET /docs`` (a plain API
  reference, no CDN) and ``GET /openapi.json``.

All requests share one chat-model client and one
:class:`~lc_async_pipelines.runner.RateBudget` (RPM, TPM, calls in flight), so
the provider's limits hold across clients. A client that disconnects cancels
its model calls. Each request is logged after its response (logger
``lc_async_pipelines.service``); headers, and so the bearer token and API key,
are never logged.

Under hostile clients: with a token set, every path but the page and
``/healthz`` needs it, checked before the body is read; without one, only
loopback Host names are answered (``PIPELINES_ALLOWED_HOSTS`` adds others).
No body gets a 5xx: non-JSON content types are a 415, non-strict JSON (NaN,
lone surrogates, too deep) a 422, and a 422 echoes at most an excerpt of
the input. Every response carries a same-origin CSP and no-framing, no-sniff,
no-referrer headers. A failure reaches the client as its class and a request
id; its text goes, scrubbed, to the log only. :func:`serve` runs uvicorn with
a connection cap, header and body deadlines, and a graceful shutdown.

Modules: ``_settings`` (:class:`ServiceSettings`), ``_schemas`` (request and
response bodies), ``_security`` (bearer token, body size and deadline, strict
JSON, short 422s), ``_headers`` (security headers), ``_state`` (the shared
model, budget and chains), ``_events`` (invoke, SSE stream and batch runs),
``_routes`` (the endpoints and the docs page), ``_server`` (:func:`serve`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from lc_async_pipelines import telemetry
from lc_async_pipelines._scrub import register_secret
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.registry import PipelineSpec, registered_pipelines
from lc_async_pipelines.service._headers import SecurityHeaders, content_security_policy
from lc_async_pipelines.service._routes import DOCS_STYLE, page_html, router
from lc_async_pipelines.service._schemas import BatchRequest, InvokeRequest, InvokeResponse
from lc_async_pipelines.service._security import (
    BearerAuth,
    BodyDeadline,
    BodyLimit,
    short_validation_errors,
)
from lc_async_pipelines.service._server import bind, serve
from lc_async_pipelines.service._settings import ServiceSettings
from lc_async_pipelines.service._state import injected_state, lifespan
from lc_async_pipelines.service._tracing import TraceContext

__all__ = [
    "BatchRequest",
    "InvokeRequest",
    "InvokeResponse",
    "ServiceSettings",
    "bind",
    "create_app",
    "secured_app",
    "serve",
]


class _App(FastAPI):
    """FastAPI with the security headers outside all its middleware, its 500s included."""

    csp = "default-src 'self'; frame-ancestors 'none'"

    def build_middleware_stack(self) -> ASGIApp:
        """Wrap the whole stack in :class:`SecurityHeaders`."""
        return SecurityHeaders(super().build_middleware_stack(), self.csp)


def secured_app(settings: ServiceSettings, *, pages: Sequence[str], **fastapi_args: Any) -> FastAPI:
    """Return an empty FastAPI app behind the service's guards, for this service or another.

    The guards, outermost first: the security headers (a same-origin CSP
    allowing the inline scripts and styles of ``pages`` by hash, no framing,
    no sniffing, no referrer), the Host check (loopback names only without a
    token), the bearer token (every path but ``/`` and ``/healthz``), the
    body deadline and the body size limit; a 422 echoes only a short excerpt.
    ``pipelines view`` serves its page behind the same guards.

    Args:
        settings: the token, allowed hosts and body limits.
        pages: the HTML the app serves (their inline code is allowed by hash).
        **fastapi_args: passed to ``FastAPI`` (title, lifespan, docs_url, ...).

    Returns:
        The app, with ``app.state.settings`` set; add its routes.
    """
    register_secret(settings.api_token)
    app = _App(**fastapi_args)
    app.csp = content_security_policy(pages)
    # Added innermost first: host check, then token, then body deadline and size.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)
    app.add_middleware(BearerAuth, token=settings.api_token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    app.add_exception_handler(RequestValidationError, short_validation_errors)
    app.state.settings = settings
    return app


def create_app(
    llm: ChatModel | None = None,
    *,
    settings: ServiceSettings | None = None,
    model_settings: ModelSettings | None = None,
    pipelines: Mapping[str, PipelineSpec] | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        llm: the chat model every request shares, put behind the shared
            budget here. None: a model session is opened at startup from
            ``model_settings`` (the embedded model when no endpoint is set,
            started with ``max_in_flight`` slots and stopped at shutdown).
        settings: service settings (default :meth:`ServiceSettings.from_env`).
        model_settings: model settings (default ``ModelSettings.from_env()``).
        pipelines: served name -> spec (default: every registered pipeline,
            :func:`~lc_async_pipelines.registry.registered_pipelines`).

    Returns:
        A FastAPI app; run it with :func:`serve` (the limits, the graceful
        shutdown) or ``pipelines serve``. With telemetry on
        (:mod:`lc_async_pipelines.telemetry`), each request is a server span
        continuing the caller's W3C ``traceparent``.
    """
    settings = settings or ServiceSettings.from_env()
    telemetry.enable_from_environment()  # a model session at startup would too; llm given: here
    specs = dict(pipelines or registered_pipelines())
    app = secured_app(
        settings,
        pages=[page_html(), f"<style>{DOCS_STYLE}</style>"],
        title="LangChain async pipelines",
        summary="LCEL pipelines: invoke, stream (SSE) and batch, and a page.",
        lifespan=lifespan(llm, settings, model_settings, specs),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: /docs is ours (_routes)
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_middleware(TraceContext)  # outermost: a refused request is traced too
    # With an injected model the state is ready now, so ASGI clients that skip the lifespan work.
    app.state.pipelines = None if llm is None else injected_state(llm, settings, specs)
    app.include_router(router)
    return app
