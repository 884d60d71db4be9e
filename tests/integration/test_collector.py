"""Traces through a real OTLP receiver (Arize Phoenix, tests/integration/_collector.py).

The first test checks the harness itself with plain OpenTelemetry SDK spans;
the second is issue 20's: a map-reduce summary run with faults, its spans
read back from the receiver.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration._collector import STATUS_ERROR, Collector, running_collector


@pytest.fixture(scope="session")
def collector():
    with running_collector() as running:
        yield running


def _typed(value: Any) -> Any:
    """``value`` with its type spelled out: ``1 == True == 1.0`` must not pass for a round trip."""
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _typed_map(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: _typed(value) for key, value in attributes.items()}


RUN_ATTRIBUTES = {
    "pipelines.run.pipeline": "summary",
    "pipelines.run.items": 3,
    "pipelines.run.rpm": 1.5,
    "pipelines.run.resumed": False,
    "pipelines.run.fields": ["id", "article"],
    "pipelines.run.lines": [1, 2, 3],
    "pipelines.run.weights": [0.25, 0.5],
    "pipelines.run.flags": [True, False],
}
MODEL_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "mock",
    "gen_ai.response.model": "mock",
    "gen_ai.request.max_tokens": 80,
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 42,
    "gen_ai.response.finish_reasons": ["stop"],
    "error.type": "InternalServerError",
}
RETRY_EVENT = {
    "error.type": "RateLimitError",
    "http.response.status_code": 429,
    "pipelines.retry.attempt": 1,
    "pipelines.retry.wait_s": 0.05,
}


def test_sdk_spans_round_trip_through_the_receiver(collector: Collector, monkeypatch):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    # the standard variable, as a user sets it: the exporter appends /v1/traces
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": "collector-harness"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("tests.integration.test_collector")
    with tracer.start_as_current_span("pipelines.run", attributes=RUN_ATTRIBUTES) as run:
        with tracer.start_as_current_span("pipelines.item", attributes={"pipelines.item.id": "a"}):
            with tracer.start_as_current_span(
                "chat mock", kind=trace.SpanKind.CLIENT, attributes=MODEL_ATTRIBUTES
            ) as call:
                call.add_event("pipelines.retry", RETRY_EVENT)
                call.add_event("pipelines.rate_limit", {"pipelines.rate_limit.paused": True})
                call.set_status(trace.Status(trace.StatusCode.ERROR, "injected 500"))
        with tracer.start_as_current_span("pipelines.item", attributes={"pipelines.item.id": "b"}):
            pass
    with tracer.start_as_current_span("another trace"):
        pass  # a second trace: reading by trace id leaves it out
    provider.shutdown()

    context = run.get_span_context()
    trace_id = trace.format_trace_id(context.trace_id)
    spans = collector.wait_for(4, trace_id=trace_id)
    assert sorted(s.name for s in spans) == sorted(
        ["pipelines.run", "pipelines.item", "pipelines.item", "chat mock"]
    )
    by_name = {s.name: s for s in spans}
    root = by_name["pipelines.run"]
    assert root.span_id == trace.format_span_id(context.span_id)
    assert root.parent_span_id is None
    assert _typed_map(root.sent_attributes()) == _typed_map(RUN_ATTRIBUTES)

    items = collector.spans(trace_id=trace_id, name="pipelines.item")
    assert sorted(s.attributes["pipelines.item.id"] for s in items) == ["a", "b"]
    assert {s.parent_span_id for s in items} == {root.span_id}
    item_a = next(s for s in items if s.attributes["pipelines.item.id"] == "a")

    model = by_name["chat mock"]
    assert model.parent_span_id == item_a.span_id
    assert _typed_map(model.sent_attributes()) == _typed_map(MODEL_ATTRIBUTES)
    assert [e.name for e in model.events] == ["pipelines.retry", "pipelines.rate_limit"]
    retry = model.events_named("pipelines.retry")[0]
    assert _typed_map(retry.attributes) == _typed_map(RETRY_EVENT)
    assert model.events_named("pipelines.rate_limit")[0].attributes == {
        "pipelines.rate_limit.paused": True
    }
    assert (model.status_code, model.status_message) == (STATUS_ERROR, "injected 500")
    assert root.start_ns <= model.start_ns <= model.end_ns <= root.end_ns
