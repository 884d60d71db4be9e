"""A FastAPI app serving every registered pipeline: invoke, stream (SSE), batch, a page.

Endpoints (``{name}`` is a key of :data:`pipelines.registry.PIPELINES`):

- ``POST /v1/pipelines/{name}/invoke``: ``{"input", "max_words"?}`` in; the
  output with usage (tokens), latency and time to first token (seconds) out.
- ``POST /v1/pipelines/{name}/stream``: server-sent events: ``token``
  (``{"text", "call"}``) as the model streams, then one ``end`` (the whole
  output, usage, latency, TTFT) or one ``error`` (``{"type", "message"}``).
- ``POST /v1/pipelines/{name}/batch``: ``{"inputs": [...]}`` in; one ``result``
  event per input as it completes (``index`` says which), then ``end``.
- ``GET /v1/pipelines``, ``GET /healthz``, ``GET /`` (the page), ``GET /docs``.

All requests share one chat-model client and one :class:`RateBudget` (RPM,
TPM, calls in flight), so the provider's limits hold across clients. A client
that disconnects cancels its model calls. Each request is logged after its
response (a background task); headers, and so the bearer token and API key,
are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from dotenv import dotenv_values
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.callbacks.metrics import MetricsCallbackHandler
from lc_async_pipelines.callbacks.queue import QueueCallbackHandler, StreamEvent
from lc_async_pipelines.models import ModelSettings, chat_model_session
from lc_async_pipelines.registry import PIPELINES, PipelineSpec
from lc_async_pipelines.runner import Item, RateBudget, Record, RetryPolicy, run_items, with_budget
from lc_async_pipelines.runner._errors import is_transient

__all__ = [
    "BatchRequest",
    "InvokeRequest",
    "InvokeResponse",
    "ServiceSettings",
    "create_app",
]

log = logging.getLogger("lc_async_pipelines.service")

_T = TypeVar("_T")

MAX_WORDS_LIMIT = 1_000
MAX_BATCH = 64


class ServiceSettings(BaseModel):
    """Settings of the service, from the environment or ``.env`` (:meth:`from_env`).

    ``PIPELINES_API_TOKEN``: bearer token required on ``/v1/*`` when set.
    ``PIPELINES_RPM`` / ``PIPELINES_TPM``: requests and tokens per minute shared
    by all requests, aiming ``PIPELINES_RATE_MARGIN`` (default 0.01) below them.
    ``PIPELINES_MAX_IN_FLIGHT``: model calls at once (default 4).
    ``PIPELINES_MAX_BODY_BYTES``: larger request bodies get 413 (default 1 MB).
    ``PIPELINES_REQUEST_TIMEOUT``: deadline of an invoke or a batch input,
    retries included, seconds (default 300).
    """

    model_config = ConfigDict(frozen=True)

    api_token: SecretStr | None = None
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_in_flight: int = Field(default=4, ge=1)
    rate_margin: float = Field(default=0.01, ge=0, lt=1)
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    retry: RetryPolicy = RetryPolicy(max_retries=2)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> ServiceSettings:
        """Read settings from ``environ`` (default ``os.environ``) over ``env_file``."""
        values: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        names = {
            "api_token": "PIPELINES_API_TOKEN",
            "rpm": "PIPELINES_RPM",
            "tpm": "PIPELINES_TPM",
            "max_in_flight": "PIPELINES_MAX_IN_FLIGHT",
            "rate_margin": "PIPELINES_RATE_MARGIN",
            "max_body_bytes": "PIPELINES_MAX_BODY_BYTES",
            "request_timeout_s": "PIPELINES_REQUEST_TIMEOUT",
        }
        return cls.model_validate({k: values[v] for k, v in names.items() if values.get(v)})


def _nonblank(value: str) -> str:
    if not value.strip():
        msg = "must not be empty or only whitespace"
        raise ValueError(msg)
    return value


class InvokeRequest(BaseModel):
    """One input for a pipeline.

    Attributes:
        input: the topic or document, 1 to 200,000 characters (each pipeline
            may accept less: ``GET /v1/pipelines`` lists its ``max_input_chars``).
        max_words: output length cap, words (default: the pipeline's).
    """

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1, max_length=200_000)
    max_words: int | None = Field(default=None, ge=10, le=MAX_WORDS_LIMIT)

    _check_input = field_validator("input")(_nonblank)


class BatchRequest(BaseModel):
    """Up to 64 inputs for a pipeline, run concurrently within the shared budget."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Annotated[str, Field(min_length=1, max_length=200_000)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )
    max_words: int | None = Field(default=None, ge=10, le=MAX_WORDS_LIMIT)

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            if not value.strip():
                msg = f"inputs[{i}] must not be empty or only whitespace"
                raise ValueError(msg)
        return values


class Usage(BaseModel):
    """Tokens over all model calls of a request."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class InvokeResponse(BaseModel):
    """A pipeline's output with its figures (seconds, tokens)."""

    pipeline: str
    output: str
    usage: Usage
    latency_s: float
    ttft_s: float | None
    calls: int
    attempts: int


@dataclass
class _State:
    llm: ChatModel
    budget: RateBudget
    settings: ServiceSettings
    model_name: str
    chains: dict[tuple[str, int], Runnable[str, str]] = field(default_factory=dict)
    in_flight: int = 0

    def chain(self, spec: PipelineSpec, max_words: int | None) -> Runnable[str, str]:
        key = (spec.name, max_words or spec.default_max_words)
        if key not in self.chains:
            self.chains[key] = spec.build(self.llm, key[1])
        return self.chains[key]


class _BodyLimit:
    """Answer 413 to a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


def _log_request(entry: dict[str, Any]) -> None:
    log.info("request %s", json.dumps(entry, sort_keys=True))


def _record_figures(record: Record) -> dict[str, Any]:
    return {
        "usage": record.usage,
        "latency_s": record.latency_s,
        "ttft_s": record.ttft_s,
        "calls": record.calls,
        "attempts": record.attempts,
    }


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


def _state(request: Request) -> _State:
    result: _State = request.app.state.pipelines
    return result


def _authorized(request: Request) -> None:
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


def _pipeline(name: str, request: Request) -> PipelineSpec:
    specs: dict[str, PipelineSpec] = request.app.state.specs
    if name not in specs:
        raise HTTPException(404, f"no pipeline {name!r}; there are: {', '.join(specs)}")
    return specs[name]


def _check_size(spec: PipelineSpec, index: int | None, text: str) -> None:
    if len(text) > spec.max_input_chars:
        where = "input" if index is None else f"inputs[{index}]"
        raise HTTPException(
            413,
            f"{where} has {len(text)} characters; the {spec.name} pipeline takes at most "
            f"{spec.max_input_chars}",
        )


State = Annotated[_State, Depends(_state)]
Spec = Annotated[PipelineSpec, Depends(_pipeline)]
_V1 = [Depends(_authorized)]


def create_app(
    llm: ChatModel | None = None,
    *,
    settings: ServiceSettings | None = None,
    model_settings: ModelSettings | None = None,
    pipelines: Mapping[str, PipelineSpec] | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        llm: the chat model every request shares. None: one is made at startup
            from ``model_settings`` (the embedded model when no endpoint is set,
            started with ``max_in_flight`` slots and stopped at shutdown).
        settings: service settings (default :meth:`ServiceSettings.from_env`).
        model_settings: model settings (default ``ModelSettings.from_env()``).
        pipelines: name -> spec (default :data:`pipelines.registry.PIPELINES`).

    Returns:
        A FastAPI app; run it with ``uvicorn`` or ``pipelines serve``.
    """
    settings = settings or ServiceSettings.from_env()
    specs = dict(pipelines or PIPELINES)

    def budget() -> RateBudget:
        return RateBudget(
            rpm=settings.rpm,
            tpm=settings.tpm,
            max_in_flight=settings.max_in_flight,
            margin=settings.rate_margin,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if llm is not None:  # ready already (below)
            yield
            return
        async with chat_model_session(model_settings, parallel=settings.max_in_flight) as model:
            shared = budget()
            app.state.pipelines = _State(
                with_budget(model, shared), shared, settings, model.model_name
            )
            yield

    app = FastAPI(
        title="LangChain async pipelines",
        summary="Story and summary LCEL pipelines: invoke, stream (SSE) and batch.",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    app.state.settings = settings
    app.state.specs = specs
    if llm is not None:
        # Ready without a lifespan, so ASGI test clients that skip it work too.
        shared = budget()
        app.state.pipelines = _State(with_budget(llm, shared), shared, settings, _name(llm))

    @app.get("/healthz")
    async def healthz(st: State) -> dict[str, Any]:
        """Liveness and the shared budget's figures."""
        return {
            "status": "ok",
            "model": st.model_name,
            "in_flight": st.in_flight,
            "requests_sent": st.budget.requests_sent,
            "throttled_429": st.budget.throttled,
        }

    @app.get("/v1/pipelines", dependencies=_V1)
    async def list_pipelines() -> list[dict[str, Any]]:
        """The pipelines served, with their input limits."""
        return [
            {
                "name": s.name,
                "description": s.description,
                "input_label": s.input_label,
                "max_input_chars": s.max_input_chars,
                "default_max_words": s.default_max_words,
            }
            for s in specs.values()
        ]

    @app.post("/v1/pipelines/{name}/invoke", dependencies=_V1)
    async def invoke(
        body: InvokeRequest, spec: Spec, st: State, request: Request, background: BackgroundTasks
    ) -> InvokeResponse:
        """Run the pipeline on one input; 502 when the model fails, 504 past the deadline."""
        _check_size(spec, None, body.input)
        rid = uuid.uuid4().hex[:12]
        chain = st.chain(spec, body.max_words)
        st.in_flight += 1
        try:
            work = _invoke_one(chain, Item(rid, 0, body.input), settings)
            record = await _unless_disconnected(request, work)
        finally:
            st.in_flight -= 1
        entry = {"id": rid, "pipeline": spec.name, "endpoint": "invoke", **_record_figures(record)}
        background.add_task(_log_request, {**entry, "ok": record.ok})
        if record.error is not None:
            status = 504 if record.error["type"] == "DeadlineExceeded" else 502
            raise HTTPException(status, {"error": record.error, "attempts": record.attempts})
        return InvokeResponse(
            pipeline=spec.name, output=str(record.output), **_record_figures(record)
        )

    @app.post("/v1/pipelines/{name}/stream", dependencies=_V1)
    async def stream(body: InvokeRequest, spec: Spec, st: State) -> EventSourceResponse:
        """Stream the pipeline's tokens as server-sent events, then ``end`` or ``error``."""
        _check_size(spec, None, body.input)
        rid = uuid.uuid4().hex[:12]
        entry: dict[str, Any] = {"id": rid, "pipeline": spec.name, "endpoint": "stream"}
        events = _stream_events(st, st.chain(spec, body.max_words), body.input, entry)
        return EventSourceResponse(events, ping=15, background=BackgroundTask(_log_request, entry))

    @app.post("/v1/pipelines/{name}/batch", dependencies=_V1)
    async def batch(body: BatchRequest, spec: Spec, st: State) -> EventSourceResponse:
        """Run many inputs; one ``result`` event per input as it completes, then ``end``."""
        for i, text in enumerate(body.inputs):
            _check_size(spec, i, text)
        rid = uuid.uuid4().hex[:12]
        entry: dict[str, Any] = {"id": rid, "pipeline": spec.name, "endpoint": "batch"}
        events = _batch_events(st, st.chain(spec, body.max_words), body.inputs, entry)
        return EventSourceResponse(events, ping=15, background=BackgroundTask(_log_request, entry))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (
            resources.files("lc_async_pipelines").joinpath("static/index.html").read_text("utf-8")
        )

    return app


async def _invoke_one(chain: Runnable[str, str], item: Item, settings: ServiceSettings) -> Record:
    """Run one item with the runner's retries, deadline, timings and usage."""
    records = run_items(
        chain, [item], retry=settings.retry, item_timeout_s=settings.request_timeout_s
    )
    async with aclosing(records):
        async for record in records:
            return record
    raise RuntimeError("the runner yielded no record")  # unreachable: one item, one record


def _name(llm: ChatModel) -> str:
    bound = getattr(llm, "bound", llm)
    return str(getattr(bound, "model_name", None) or type(bound).__name__)


def _sse(event: str, data: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=event)


async def _stream_events(
    st: _State, chain: Runnable[str, str], text: str, entry: dict[str, Any]
) -> AsyncIterator[ServerSentEvent]:
    """Run ``chain``, yielding its tokens, then ``end`` or ``error``.

    A transient failure (429, 5xx, connection) before the first token is retried
    with the service's :class:`RetryPolicy`; after a token has been sent the
    client has seen part of an answer, so the error is sent instead.
    sse-starlette cancels this generator when the client disconnects; the
    ``finally`` then cancels the model call.
    """
    metrics = MetricsCallbackHandler()
    calls: dict[uuid.UUID, int] = {}
    sent = 0
    start = time.perf_counter()
    policy = st.settings.retry
    st.in_flight += 1
    entry["ok"] = False
    task: asyncio.Task[str] | None = None

    def retryable(exc: BaseException) -> bool:
        return sent == 0 and is_transient(exc)

    try:
        async for attempt in policy.retrying(retryable):
            with attempt:
                queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
                callbacks: list[BaseCallbackHandler] = [QueueCallbackHandler(queue), metrics]
                task = asyncio.create_task(chain.ainvoke(text, {"callbacks": callbacks}))
                task.add_done_callback(lambda _, q=queue: q.put_nowait(None))  # type: ignore[misc]
                while (event := await queue.get()) is not None:
                    if event.kind == "token" and event.text:
                        sent += 1
                        call = calls.setdefault(event.run_id, len(calls))
                        yield _sse("token", {"text": event.text, "call": call})
                output = task.result()
        figures = _stream_figures(metrics, start)
        entry.update(figures, ok=True)
        yield _sse("end", {"output": output, **figures})
    except Exception as exc:
        entry.update(_stream_figures(metrics, start), error=type(exc).__name__)
        yield _sse("error", {"type": type(exc).__name__, "message": str(exc)[:2000]})
    finally:
        st.in_flight -= 1
        if task is not None and not task.done():
            entry["error"] = "ClientDisconnected"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _stream_figures(metrics: MetricsCallbackHandler, start: float) -> dict[str, Any]:
    return {
        "usage": metrics.usage(),
        "latency_s": round(time.perf_counter() - start, 4),
        "ttft_s": metrics.first_ttft(),
        "calls": len(metrics.calls),
    }


async def _batch_events(
    st: _State, chain: Runnable[str, str], texts: list[str], entry: dict[str, Any]
) -> AsyncIterator[ServerSentEvent]:
    """Run ``texts`` through ``chain`` with the runner, yielding each record as it completes."""
    items = [Item(str(i), i, t) for i, t in enumerate(texts)]
    config = RunnableConfig(max_concurrency=len(items))
    done = failed = 0
    st.in_flight += len(items)
    try:
        records = run_items(
            chain,
            items,
            config=config,
            retry=st.settings.retry,
            item_timeout_s=st.settings.request_timeout_s,
        )
        # aclosing: a client gone mid-batch closes the runner, which cancels its items.
        async with aclosing(records):
            async for record in records:
                done, failed = done + record.ok, failed + (not record.ok)
                yield _sse(
                    "result",
                    {
                        "index": int(record.id),
                        "output": record.output,
                        "error": record.error,
                        **_record_figures(record),
                    },
                )
        yield _sse("end", {"done": done, "failed": failed})
    finally:
        st.in_flight -= len(items)
        entry.update({"items": len(items), "done": done, "failed": failed})
