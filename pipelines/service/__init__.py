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
  ``GET /healthz``, ``GET /`` (the page), ``GET /docs``.

All requests share one chat-model client and one
:class:`~lc_async_pipelines.runner.RateBudget` (RPM, TPM, calls in flight), so
the provider's limits hold across clients. A client that disconnects cancels
its model calls. Each request is logged after its response (logger
``lc_async_pipelines.service``); headers, and so the bearer token and API key,
are never logged.

Modules: ``_settings`` (:class:`ServiceSettings`), ``_schemas`` (request and
response bodies), ``_security`` (bearer token, body size limit), ``_state``
(the shared model, budget and chains), ``_events`` (invoke, SSE stream and
batch runs), ``_routes`` (the endpoints).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.registry import PipelineSpec, registered_pipelines
from lc_async_pipelines.service._routes import router
from lc_async_pipelines.service._schemas import BatchRequest, InvokeRequest, InvokeResponse
from lc_async_pipelines.service._security import BodyLimit
from lc_async_pipelines.service._settings import ServiceSettings
from lc_async_pipelines.service._state import injected_state, lifespan

__all__ = [
    "BatchRequest",
    "InvokeRequest",
    "InvokeResponse",
    "ServiceSettings",
    "create_app",
]


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
        A FastAPI app; run it with ``uvicorn`` or ``pipelines serve``.
    """
    settings = settings or ServiceSettings.from_env()
    specs = dict(pipelines or registered_pipelines())
    app = FastAPI(
        title="LangChain async pipelines",
        summary="LCEL pipelines: invoke, stream (SSE) and batch, and a page.",
        lifespan=lifespan(llm, settings, model_settings, specs),
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.settings = settings
    # With an injected model the state is ready now, so ASGI clients that skip the lifespan work.
    app.state.pipelines = None if llm is None else injected_state(llm, settings, specs)
    app.include_router(router)
    return app
