"""The endpoints: health, the pipeline listing, invoke, stream, batch and the page.

Every ``/v1`` route needs the bearer token when one is set. An input is
checked against its pipeline before any model call: over ``max_input_chars``
is a 413, a ``max_words`` the pipeline does not take or an input that does not
fit the chain's input schema is a 422 naming it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from langchain_core.runnables import Runnable
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from lc_async_pipelines.errors import ConfigurationError, DeadlineExceeded, InputError
from lc_async_pipelines.runner import Item
from lc_async_pipelines.service._events import (
    batch_events,
    invoke_one,
    jsonable,
    log_request,
    record_figures,
    stream_events,
)
from lc_async_pipelines.service._schemas import (
    BatchRequest,
    InvokeRequest,
    InvokeResponse,
    PipelineInfo,
)
from lc_async_pipelines.service._security import authorized
from lc_async_pipelines.service._state import ServedPipeline, ServiceState, get_state

__all__ = ["router"]

_T = TypeVar("_T")

State = Annotated[ServiceState, Depends(get_state)]

router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])


def _pipeline(name: str, state: State) -> ServedPipeline:
    if name not in state.pipelines:
        raise HTTPException(404, f"no pipeline {name!r}; there are: {', '.join(state.pipelines)}")
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
    state: ServiceState, pipeline: ServedPipeline, max_words: int | None
) -> Runnable[Any, Any]:
    """Return the chain for the request's options; 422 for an option the pipeline does not take."""
    options = {} if max_words is None else {"max_words": max_words}
    try:
        return state.chain(pipeline.spec, **options)
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from None


async def _until_disconnected(request: Request) -> None:
    """Return once the client has gone (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await ``work``; cancel it and answer 499 if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise HTTPException(499, "client closed the request")
    return task.result()


@router.get("/healthz")
async def healthz(state: State) -> dict[str, Any]:
    """Liveness, the model, and the shared budget's figures."""
    return {
        "status": "ok",
        "model": state.model,
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
    chain = _chain(state, pipeline, body.max_words)
    rid = uuid.uuid4().hex[:12]
    state.in_flight += 1
    try:
        record = await _unless_disconnected(
            request, invoke_one(chain, Item(rid, 0, body.input), state.settings)
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
        raise HTTPException(status, {"error": record.error, "attempts": record.attempts})
    return InvokeResponse(
        pipeline=pipeline.name, output=jsonable(record.output), **record_figures(record)
    )


@v1.post("/pipelines/{name}/stream")
async def stream(body: InvokeRequest, pipeline: Pipeline, state: State) -> EventSourceResponse:
    """Stream the pipeline's tokens as server-sent events, then ``end`` or ``error``."""
    _check_input(pipeline, body.input, "input")
    chain = _chain(state, pipeline, body.max_words)
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "pipeline": pipeline.name,
        "endpoint": "stream",
    }
    events = stream_events(state, chain, body.input, entry)
    return EventSourceResponse(events, ping=15, background=BackgroundTask(log_request, entry))


@v1.post("/pipelines/{name}/batch")
async def batch(body: BatchRequest, pipeline: Pipeline, state: State) -> EventSourceResponse:
    """Run many inputs; one ``result`` event per input as it completes, then ``end``."""
    for i, value in enumerate(body.inputs):
        _check_input(pipeline, value, f"inputs[{i}]")
    chain = _chain(state, pipeline, body.max_words)
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "pipeline": pipeline.name,
        "endpoint": "batch",
    }
    events = batch_events(state, chain, body.inputs, entry)
    return EventSourceResponse(events, ping=15, background=BackgroundTask(log_request, entry))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    """The page: pick a pipeline, give an input, watch several runs stream at once."""
    return resources.files("lc_async_pipelines").joinpath("static/index.html").read_text("utf-8")


router.include_router(v1)
