"""The spans, events and metrics of runs, items and model requests: :class:`Telemetry`.

Imported only once telemetry is switched on
(:func:`~lc_async_pipelines.telemetry.configure_telemetry`): it imports
OpenTelemetry's API. Names: :mod:`~lc_async_pipelines.telemetry.names`;
attribute values never hold a secret (an endpoint's URL goes through the
project's scrubber, an error is named by its class, not its text).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from lc_async_pipelines._scrub import error_text, scrub
from lc_async_pipelines._version import __version__
from lc_async_pipelines.telemetry import names

__all__ = ["ModelCall", "Telemetry"]

# The GenAI conventions' advised histogram buckets (gen-ai-metrics.md)
_TOKEN_BUCKETS = [4.0**n for n in range(14)]
_DURATION_BUCKETS = [0.01 * 2**n for n in range(14)]
# Waits shorter than this get no span (the histogram still counts them).
WAIT_SPAN_MIN_S = 0.001
_Attrs = dict[str, Any]


def _epoch_ns(seconds_ago: float) -> int:
    return time.time_ns() - int(seconds_ago * 1e9)


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _fail(span: Span, exc: BaseException) -> str:
    """Mark ``span`` failed by ``exc``: error.type its class, the status its scrubbed text."""
    kind = type(exc).__name__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, error_text(exc, limit=300)))
    return kind


def server_attributes(base_url: str | None) -> _Attrs:
    """``server.address`` and ``server.port`` of an endpoint URL: never its userinfo or path."""
    if not base_url:
        return {}
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:  # not a URL we can read: say nothing rather than fail the call
        return {}
    attributes: _Attrs = {}
    if host:
        attributes["server.address"] = scrub(host)
    if port:
        attributes["server.port"] = port
    return attributes


def _messages(messages: Sequence[Any]) -> str:
    """Chat messages as the GenAI conventions' JSON (role, text parts)."""
    out = []
    for message in messages:
        role = {"human": "user", "ai": "assistant"}.get(message.type, message.type)
        out.append({"role": role, "parts": [{"type": "text", "content": message.text}]})
    return json.dumps(out, ensure_ascii=False)


class ModelCall:
    """One model call's span (``chat {model}``), from the budgeted model's start to its reply.

    Attach it (:meth:`current`) while the call waits and retries, so the
    budget's wait span and the retry events land on it; end it with
    :meth:`finish` (the reply) or :meth:`fail`.
    """

    def __init__(self, telemetry: Telemetry, span: Span, attributes: _Attrs) -> None:
        self._telemetry = telemetry
        self.span = span
        self._attributes = attributes  # the metrics' attributes
        self._began = time.perf_counter()

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make this call's span the current one inside the block."""
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def finish(
        self,
        message: Any,
        usage: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """End the span with the reply's model, finish reason and usage.

        Args:
            message: the reply (an ``AIMessage``): its ``response_metadata``
                (``model_name``, ``finish_reason``, ``id``), ``usage_metadata``
                and, when content is captured, its text.
            usage: the usage, when not the message's (a stream's, summed).
            info: the generation's ``generation_info``, read under the metadata.
        """
        span = self.span
        metadata = {**(info or {}), **(getattr(message, "response_metadata", None) or {})}
        usage = usage if usage is not None else getattr(message, "usage_metadata", None) or {}
        attributes = dict(self._attributes)
        if model := metadata.get("model_name") or metadata.get("model"):
            span.set_attribute("gen_ai.response.model", str(model))
            attributes["gen_ai.response.model"] = str(model)
        if reason := metadata.get("finish_reason") or metadata.get("stop_reason"):
            span.set_attribute("gen_ai.response.finish_reasons", [str(reason)])
        if response_id := metadata.get("id"):
            span.set_attribute("gen_ai.response.id", str(response_id))
        self._usage(usage, attributes)
        if self._telemetry.capture_content and message is not None:
            span.set_attribute("gen_ai.output.messages", _messages([message]))
        self._end(attributes)

    def _usage(self, usage: Mapping[str, Any], attributes: _Attrs) -> None:
        tokens = self._telemetry.token_usage
        for key, kind in (("input_tokens", "input"), ("output_tokens", "output")):
            if key in usage:
                self.span.set_attribute(f"gen_ai.usage.{key}", int(usage[key]))
                tokens.record(int(usage[key]), {**attributes, "gen_ai.token.type": kind})
        cached = (usage.get("input_token_details") or {}).get("cache_read")
        if cached is not None:
            self.span.set_attribute("gen_ai.usage.cache_read.input_tokens", int(cached))

    def fail(self, exc: BaseException) -> None:
        """End the span as failed by ``exc`` (its retries spent, or not worth one)."""
        kind = _fail(self.span, exc)
        self._end({**self._attributes, "error.type": kind})

    def _end(self, attributes: _Attrs) -> None:
        self._telemetry.duration.record(time.perf_counter() - self._began, attributes)
        self.span.end()


class Telemetry:
    """What the runner, the budgeted model and the service report to, while switched on.

    Built by :func:`~lc_async_pipelines.telemetry.configure_telemetry`.

    Args:
        tracer_provider: an ``opentelemetry.trace.TracerProvider``.
        meter_provider: an ``opentelemetry.metrics.MeterProvider``, or None (no metrics).
        capture_content: put prompt and reply text on model spans.
        owned: the providers were built here: :meth:`shutdown` shuts them down.
    """

    def __init__(
        self,
        tracer_provider: Any,
        meter_provider: Any,
        *,
        capture_content: bool = False,
        owned: bool = False,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.capture_content = capture_content
        self._owned = owned
        self.tracer: Tracer = tracer_provider.get_tracer(names.SCOPE, __version__)
        meter: Meter = (meter_provider or NoOpMeterProvider()).get_meter(names.SCOPE, __version__)
        self.token_usage = meter.create_histogram(
            names.TOKEN_USAGE_METRIC,
            unit="{token}",
            description="Tokens used by a model request, by gen_ai.token.type",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            names.DURATION_METRIC,
            unit="s",
            description="Duration of a model call, retries and budget wait included",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.requests = meter.create_counter(
            names.REQUESTS_METRIC, unit="{request}", description="Requests sent to the model"
        )
        self.rate_limits = meter.create_counter(
            names.RATE_LIMITS_METRIC, unit="{response}", description="HTTP 429 responses"
        )
        self.retries = meter.create_counter(
            names.RETRIES_METRIC, unit="{retry}", description="Retries, of calls and of items"
        )
        self.items = meter.create_counter(
            names.ITEMS_METRIC, unit="{item}", description="Items finished, by outcome"
        )
        self.cost = meter.create_counter(
            names.COST_METRIC, unit="USD", description="What the items' model calls cost"
        )
        self.budget_wait = meter.create_histogram(
            names.BUDGET_WAIT_METRIC,
            unit="s",
            description="Time a request waited for the rate budget",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def shutdown(self) -> None:
        """Flush what is buffered; shut the providers down if they were built here."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is None:
                continue
            with contextlib.suppress(Exception):  # an exporter that cannot reach its endpoint
                if self._owned:
                    provider.shutdown()
                elif hasattr(provider, "force_flush"):
                    provider.force_flush()

    # -- runs and items ------------------------------------------------------------------

    def start_run(self, attributes: Mapping[str, Any]) -> Span:
        """Start a run's span (``pipelines.run``), a child of the current span; not made current."""
        return self.tracer.start_span(names.RUN_SPAN, attributes=dict(attributes))

    def end_run(self, span: Span, done: int, failed: int) -> None:
        """End a run's span with its counts of items done and failed."""
        span.set_attribute("pipelines.run.items_done", done)
        span.set_attribute("pipelines.run.items_failed", failed)
        span.end()

    @contextlib.contextmanager
    def item(self, run: Span | None, item_id: str, line: int) -> Iterator[Span]:
        """An item's span (``pipelines.item``) under ``run``, current inside the block."""
        parent = trace.set_span_in_context(run) if run is not None else None
        attributes: _Attrs = {"pipelines.item.id": item_id, "pipelines.item.line": line}
        span = self.tracer.start_span(names.ITEM_SPAN, context=parent, attributes=attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False):
            yield span

    def end_item(
        self,
        span: Span,
        *,
        attempts: int,
        cost_usd: float | None,
        error: BaseException | None,
    ) -> None:
        """Set an item's outcome (``ok`` or ``failed``), attempts and cost; count it."""
        outcome = "ok" if error is None else "failed"
        span.set_attribute("pipelines.item.outcome", outcome)
        span.set_attribute("pipelines.item.attempts", attempts)
        if cost_usd is not None:
            span.set_attribute("pipelines.item.cost_usd", cost_usd)
            self.cost.add(cost_usd)
        if error is not None:
            _fail(span, error)
        self.items.add(1, {"pipelines.item.outcome": outcome})

    # -- model requests ------------------------------------------------------------------

    def model_call(
        self,
        *,
        provider: str,
        model: str | None,
        max_tokens: int | None,
        base_url: str | None,
        messages: Sequence[Any],
    ) -> ModelCall:
        """Start a model call's span (GenAI ``chat``), a child of the current span."""
        attributes: _Attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider}
        if model:
            attributes["gen_ai.request.model"] = model
        attributes.update(server_attributes(base_url))
        span_attributes = dict(attributes)
        if max_tokens:
            span_attributes["gen_ai.request.max_tokens"] = max_tokens
        if self.capture_content:
            span_attributes["gen_ai.input.messages"] = _messages(messages)
        span = self.tracer.start_span(
            f"chat {model}" if model else "chat", kind=SpanKind.CLIENT, attributes=span_attributes
        )
        return ModelCall(self, span, attributes)

    def waited(self, seconds: float, *, limit: str | None, queue_depth: int) -> None:
        """Count one request sent; a wait for the budget of ``seconds`` becomes a span.

        Args:
            seconds: how long the request waited, just now.
            limit: what held it longest (``rpm``, ``tpm``, ``rate``, ``in_flight``,
                ``pause``, ``cost``), None if nothing did.
            queue_depth: requests already waiting when it arrived.
        """
        self.requests.add(1)
        self.record_wait(seconds, limit=limit, queue_depth=queue_depth)

    def record_wait(self, seconds: float, *, limit: str | None, queue_depth: int) -> None:
        """Record a budget wait that ended now (span ``pipelines.budget.wait``, histogram)."""
        limit = limit or "none"
        self.budget_wait.record(seconds, {"pipelines.budget.limit": limit})
        if seconds < WAIT_SPAN_MIN_S:
            return
        span = self.tracer.start_span(
            names.BUDGET_WAIT_SPAN,
            start_time=_epoch_ns(seconds),
            attributes={
                "pipelines.budget.limit": limit,
                "pipelines.budget.queue_depth": queue_depth,
                "pipelines.budget.wait_s": round(seconds, 6),
            },
        )
        span.end()

    def retried(self, exc: BaseException, wait_s: float, *, stage: str, attempt: int) -> None:
        """An event ``pipelines.retry`` on the current span (a call's, or an item's); count it."""
        attributes: _Attrs = {
            "error.type": type(exc).__name__,
            "pipelines.retry.stage": stage,
            "pipelines.retry.attempt": attempt,
            "pipelines.retry.wait_s": round(wait_s, 6),
        }
        if (code := _status_code(exc)) is not None:
            attributes["http.response.status_code"] = code
        trace.get_current_span().add_event(names.RETRY_EVENT, attributes)
        self.retries.add(1, {"pipelines.retry.stage": stage, "error.type": type(exc).__name__})

    def rate_limited(self, exc: BaseException, paused_s: float | None) -> None:
        """An event ``pipelines.rate_limit`` (a 429) on the current span; count it."""
        attributes: _Attrs = {
            "error.type": type(exc).__name__,
            "pipelines.rate_limit.paused": paused_s is not None,
            "pipelines.rate_limit.pause_s": round(paused_s or 0.0, 6),
        }
        if (code := _status_code(exc)) is not None:
            attributes["http.response.status_code"] = code
        trace.get_current_span().add_event(names.RATE_LIMIT_EVENT, attributes)
        self.rate_limits.add(1)

    # -- stages: Batch API, tools, service requests ---------------------------------------

    @contextlib.contextmanager
    def stage(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Iterator[Span]:
        """A span named ``name``, current inside the block; an error raised marks it failed."""
        span = self.tracer.start_span(name, kind=kind, attributes=dict(attributes or {}))
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield span
            except BaseException as exc:
                _fail(span, exc)
                raise

    @contextlib.contextmanager
    def tool(self, name: str, call_id: str | None = None) -> Iterator[Span]:
        """A tool call's span (``execute_tool {name}``, GenAI conventions)."""
        attributes: _Attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        if call_id:
            attributes["gen_ai.tool.call.id"] = call_id
        with self.stage(f"execute_tool {name}", attributes) as span:
            yield span

    @contextlib.contextmanager
    def continued(self, headers: Mapping[str, str], method: str, route: str) -> Iterator[Span]:
        """A server span continuing the caller's W3C ``traceparent`` (the global propagator)."""
        parent = propagate.extract(headers)
        token = otel_context.attach(parent)
        try:
            attributes = {"http.request.method": method, "url.path": route}
            with self.stage(names.SERVICE_SPAN, attributes, kind=SpanKind.SERVER) as span:
                yield span
        finally:
            otel_context.detach(token)
