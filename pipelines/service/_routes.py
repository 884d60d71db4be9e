"""The endpoints: health, the pipeline listing, invoke, stream, batch, the page and the docs.

Every route but the page and ``/healthz`` needs the bearer token when one is
set (:class:`~lc_async_pipelines.service._security.BearerAuth`, before the
body is read). An input is checked against its pipeline before any model
call: over ``max_input_chars`` is a 413, a ``max_words``, ``kind`` or
``candidates`` the pipeline does not take or an input that does not fit the
chain's input schema is a 422 naming it.

``/docs`` is a plain page made here from the OpenAPI schema: no script, no
CDN (FastAPI's Swagger UI and ReDoc load theirs from jsDelivr).
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from importlib import resources
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from langchain_core.runnables import Runnable
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from lc_async_pipelines._scrub import error_text
from lc_async_pipelines.errors import ConfigurationError, DeadlineExceeded, InputError
from lc_async_pipelines.runner import Item
from lc_async_pipelines.service._events import (
    batch_events,
    client_error,
    grace_over,
    invoke_one,
    jsonable,
    log_failure,
    log_request,
    record_figures,
    shutting_down_error,
    stream_events,
    until_shutdown,
)
from lc_async_pipelines.service._schemas import (
    BatchRequest,
    InvokeRequest,
    InvokeResponse,
    PipelineInfo,
)
from lc_async_pipelines.service._security import StrictJSONRoute, authorized, excerpt
from lc_async_pipelines.service._state import ServedPipeline, ServiceState, get_state

__all__ = ["DOCS_STYLE", "docs_page", "page_html", "router"]

_T = TypeVar("_T")
_CLEANUP_S = 5.0  # bound on waiting for a cancelled invoke's own cleanup

State = Annotated[ServiceState, Depends(get_state)]

router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], route_class=StrictJSONRoute)


def _pipeline(name: str, state: State) -> ServedPipeline:
    if name not in state.pipelines:
        there = ", ".join(state.pipelines)
        raise HTTPException(404, f"no pipeline {excerpt(name, 60)!r}; there are: {there}")
    return state.pipelines[name]


Pipeline = Annotated[ServedPipeline, Depends(_pipeline)]


def _check_input(pipeline: ServedPipeline, value: str | dict[str, Any], where: str) -> None:
    """Raise 413 for an input over the pipeline's limit, 422 for one of the wrong type."""
    too_long = pipeline.too_long(value)
    if too_long is not None:
        raise HTTPException(413, f"{where} {too_long}")
    problem = pipeline.type_problem(value)
    if problem is not None:
        raise HTTPException(422, f"{where}: {problem}")


def _chain(
    state: ServiceState, pipeline: ServedPipeline, body: InvokeRequest | BatchRequest
) -> Runnable[Any, Any]:
    """Return the chain for the request's options; 422 for an option the pipeline does not take."""
    options = body.model_dump(include={"max_words", "kind", "candidates"}, exclude_none=True)
    try:
        return state.chain(pipeline.spec, **options)
    except ConfigurationError as exc:
        raise HTTPException(422, error_text(exc, 500)) from None
    except Exception as exc:  # a user's factory failing on these options: not a 500
        rid = uuid.uuid4().hex[:12]
        log_failure(rid, f"{pipeline.name} (building its chain)", exc)
        detail = f"the {pipeline.name} pipeline cannot be built with these options"
        raise HTTPException(422, {"error": client_error(exc, rid), "detail": detail}) from None


async def _until_disconnected(request: Request) -> None:
    """Return once the client has gone (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(
    request: Request, work: Awaitable[_T], state: ServiceState, request_id: str
) -> _T:
    """Await ``work``; cancel it if the client disconnects or the shutdown's grace runs out.

    Raises:
        HTTPException: 499 when the client disconnected first; 503
            ``ServerShuttingDown`` when the server's shutdown grace ran out first.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_until_disconnected(request))
    grace = asyncio.create_task(grace_over(state))
    try:
        await asyncio.wait({task, watcher, grace}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        grace.cancel()
        if not task.done():
            task.cancel()
            with anyio.move_on_after(_CLEANUP_S, shield=True):
                await asyncio.gather(task, return_exceptions=True)
    if task.cancelled() and grace.done() and not grace.cancelled():
        raise HTTPException(503, {"error": shutting_down_error(request_id), "attempts": 0})
    if task.cancelled():
        raise HTTPException(499, "client closed the request")
    return task.result()


@router.get("/healthz")
async def healthz(state: State) -> dict[str, Any]:
    """Liveness, the model, whether the API needs a token, and the shared budget's figures."""
    return {
        "status": "ok",
        "model": state.model,
        "token_required": state.settings.api_token is not None,
        "in_flight": state.in_flight,
        "requests_sent": state.budget.requests_sent,
        "throttled_429": state.budget.throttled,
    }


@v1.get("/pipelines")
async def list_pipelines(state: State) -> list[PipelineInfo]:
    """The pipelines served: input label and limit, options with defaults, input JSON Schema."""
    return [p.info for p in state.pipelines.values()]


@v1.post("/pipelines/{name}/invoke")
async def invoke(
    body: InvokeRequest,
    pipeline: Pipeline,
    state: State,
    request: Request,
    background: BackgroundTasks,
) -> InvokeResponse:
    """Run the pipeline on one input; 502 when the model fails, 504 past the deadline."""
    _check_input(pipeline, body.input, "input")
    chain = _chain(state, pipeline, body)
    rid = uuid.uuid4().hex[:12]
    state.in_flight += 1
    try:
        record = await _unless_disconnected(
            request, invoke_one(chain, Item(rid, 0, body.input), state.settings), state, rid
        )
    finally:
        state.in_flight -= 1
    entry = {"id": rid, "pipeline": pipeline.name, "endpoint": "invoke", **record_figures(record)}
    background.add_task(log_request, {**entry, "ok": record.ok})
    if record.error is not None:
        if isinstance(record.exception, DeadlineExceeded):
            status = 504
        elif isinstance(record.exception, InputError):  # the chain refused the input
            status = 422
        else:
            status = 502
        log_failure(rid, f"{pipeline.name}/invoke", record.exception)
        error = client_error(record.exception, rid, record.error.get("type"))
        raise HTTPException(status, {"error": error, "attempts": record.attempts})
    return InvokeResponse(
        pipeline=pipeline.name, output=jsonable(record.output), **record_figures(record)
    )


@v1.post("/pipelines/{name}/stream")
async def stream(body: InvokeRequest, pipeline: Pipeline, state: State) -> EventSourceResponse:
    """Stream the pipeline's tokens as server-sent events, then ``end`` or ``error``."""
    _check_input(pipeline, body.input, "input")
    chain = _chain(state, pipeline, body)
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "pipeline": pipeline.name,
        "endpoint": "stream",
    }
    return _event_source(state, stream_events(state, chain, body.input, entry), entry)


@v1.post("/pipelines/{name}/batch")
async def batch(body: BatchRequest, pipeline: Pipeline, state: State) -> EventSourceResponse:
    """Run many inputs; one ``result`` event per input as it completes, then ``end``."""
    for i, value in enumerate(body.inputs):
        _check_input(pipeline, value, f"inputs[{i}]")
    chain = _chain(state, pipeline, body)
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "pipeline": pipeline.name,
        "endpoint": "batch",
    }
    return _event_source(state, batch_events(state, chain, body.inputs, entry), entry)


def _event_source(
    state: ServiceState, events: AsyncIterator[ServerSentEvent], entry: dict[str, Any]
) -> EventSourceResponse:
    """Stream ``events``; on shutdown they get the grace period, then an ``error`` event.

    A client that stops reading is dropped once one event has waited
    ``send_timeout_s`` to be sent.

    sse-starlette notices a SIGTERM under any uvicorn and would cancel the
    stream at once: its notice starts our grace instead, and it waits a
    little longer than the grace for the stream to end by itself.
    """
    notice = anyio.Event()
    return EventSourceResponse(
        until_shutdown(state, events, entry, notice),
        ping=15,
        background=BackgroundTask(log_request, entry),
        shutdown_event=notice,
        shutdown_grace_period=state.settings.shutdown_grace_s + 2,
        send_timeout=state.settings.send_timeout_s,  # a client that stopped reading
    )


@functools.cache
def page_html() -> str:
    """The page's HTML (read once; its inline script and style are allowed by hash)."""
    return resources.files("lc_async_pipelines").joinpath("static/index.html").read_text("utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    """The page: pick a pipeline, give an input, watch several runs stream at once."""
    return page_html()


DOCS_STYLE = """
  body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto;
         padding: 0 1rem; color: #1d2330; }
  section { border-top: 1px solid #ccd; padding: .4rem 0; }
  code.method { font-weight: 700; }
  pre { background: #f6f7f9; padding: .5rem; overflow-x: auto; font-size: .85rem; }
"""
"""The ``/docs`` page's only style (allowed by its hash in the CSP)."""


def docs_page(schema: dict[str, Any]) -> str:
    """Return the API reference as one plain HTML page, made from the OpenAPI ``schema``.

    Each operation: method, path, summary and description, parameters,
    request body and responses; then each schema of the components, as JSON.
    No script and nothing from another origin.
    """
    esc = html.escape
    info = schema.get("info", {})
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(str(info.get('title', 'API')))}: API reference</title>",
        f"<style>{DOCS_STYLE}</style></head><body>",
        f"<h1>{esc(str(info.get('title', 'API')))} {esc(str(info.get('version', '')))}</h1>",
        f"<p>{esc(str(info.get('summary', '')))}</p>",
        '<p>The schema as JSON: <a href="openapi.json">openapi.json</a>. '
        "With a token set, send <code>Authorization: Bearer &lt;token&gt;</code>.</p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f'<section><h2><code class="method">{esc(method.upper())}</code> ')
            parts.append(f"<code>{esc(path)}</code></h2><p>{esc(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<p>{esc(op['description'])}</p>")
            for param in op.get("parameters", []):
                parts.append(
                    f"<p>{esc(param.get('in', ''))} parameter <code>{esc(param['name'])}</code>"
                    f"{' (required)' if param.get('required') else ''}</p>"
                )
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                parts.append(
                    f"<p>body ({esc(media)}):</p><pre>{_json(content.get('schema'))}</pre>"
                )
            codes = ", ".join(
                f"{esc(code)} {esc(r.get('description', ''))}"
                for code, r in op.get("responses", {}).items()
            )
            parts.append(f"<p>responses: {codes}</p></section>")
    parts.append("<h2>Schemas</h2>")
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        parts.append(f'<section id="{esc(name)}"><h3>{esc(name)}</h3>')
        parts.append(f"<pre>{_json(component)}</pre></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json(value: Any) -> str:
    return html.escape(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs(request: Request) -> str:
    """The API reference: a plain page from the OpenAPI schema (behind the token when set)."""
    return docs_page(request.app.openapi())


router.include_router(v1)
