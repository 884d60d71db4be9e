"""Traces through a real OTLP receiver (Arize Phoenix, tests/integration/_collector.py).

The first test checks the harness itself with plain OpenTelemetry SDK spans;
the second is issue 20's: a map-reduce summary run with faults, its spans
read back from the receiver.

Names the second test expects (lc_async_pipelines.telemetry.names and
docs/telemetry.md; GenAI ones from OpenTelemetry's semantic conventions):

- ``pipelines.run``: one per run, the root; ``pipelines.run.items_done`` and
  ``pipelines.run.items_failed``;
- ``pipelines.item``: one per item, child of the run; ``pipelines.item.id``,
  ``pipelines.item.outcome`` (``ok``/``failed``), ``pipelines.item.attempts``;
- ``chat {model}``: one per model call, under its item; ``gen_ai.operation.name``
  (``chat``), ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.request.max_tokens``,
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
  ``gen_ai.response.finish_reasons``; its retries are events on it;
- event ``pipelines.retry`` (``error.type``, ``http.response.status_code``,
  ``pipelines.retry.stage``, ``pipelines.retry.attempt``, ``pipelines.retry.wait_s``)
  and event ``pipelines.rate_limit`` on a 429;
- ``pipelines.budget.wait``: a request's wait for the budget
  (``pipelines.budget.limit``, ``pipelines.budget.queue_depth``, ``pipelines.budget.wait_s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.integration._collector import (
    STATUS_ERROR,
    Collector,
    ReceivedSpan,
    running_collector,
)
from tests.integration.mock import MockConfig, mock_server


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
    # span names of its own: the receiver lives for the session, and the run test
    # below finds its run by the name pipelines.run
    with tracer.start_as_current_span("harness.run", attributes=RUN_ATTRIBUTES) as run:
        with tracer.start_as_current_span("harness.item", attributes={"pipelines.item.id": "a"}):
            with tracer.start_as_current_span(
                "chat mock", kind=trace.SpanKind.CLIENT, attributes=MODEL_ATTRIBUTES
            ) as call:
                call.add_event("pipelines.retry", RETRY_EVENT)
                call.add_event("pipelines.rate_limit", {"pipelines.rate_limit.paused": True})
                call.set_status(trace.Status(trace.StatusCode.ERROR, "injected 500"))
        with tracer.start_as_current_span("harness.item", attributes={"pipelines.item.id": "b"}):
            pass
    with tracer.start_as_current_span("another trace"):
        pass  # a second trace: reading by trace id leaves it out
    provider.shutdown()

    context = run.get_span_context()
    trace_id = trace.format_trace_id(context.trace_id)
    spans = collector.wait_for(4, trace_id=trace_id)
    assert sorted(s.name for s in spans) == sorted(
        ["harness.run", "harness.item", "harness.item", "chat mock"]
    )
    by_name = {s.name: s for s in spans}
    root = by_name["harness.run"]
    assert root.span_id == trace.format_span_id(context.span_id)
    assert root.parent_span_id is None
    assert _typed_map(root.sent_attributes()) == _typed_map(RUN_ATTRIBUTES)

    items = collector.spans(trace_id=trace_id, name="harness.item")
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


# The mock draws a fault for each request in arrival order from Random(seed):
# with these, request 1 is a 429 and request 4 a 500, and requests 5 to 40 are
# clean, so a run of 2 to 38 calls (4 to 40 requests) meets exactly one of each.
FAULTS = MockConfig(fault_rate=0.05, faults=("429", "500"), seed=2257, retry_after_s=0.05)


# what can hold a request (lc_async_pipelines.telemetry.instruments.Telemetry.waited)
BUDGET_LIMITS = {"rpm", "tpm", "rate", "in_flight", "pause"}


def _document(paragraphs: int, name: str) -> str:
    return "\n\n".join(
        " ".join(
            f"Sentence {p * 10 + i} of the {name} report says that topic {(p * 10 + i) % 7} "
            f"grew by {i} percent."
            for i in range(10)
        )
        for p in range(paragraphs)
    )


def _ancestor(span: ReceivedSpan, by_id: dict[str, ReceivedSpan], name: str) -> str | None:
    """The span id of the nearest ancestor of ``span`` named ``name``, if any."""
    parent = by_id.get(span.parent_span_id or "")
    while parent is not None and parent.name != name:
        parent = by_id.get(parent.parent_span_id or "")
    return parent.span_id if parent is not None else None


def test_summary_run_traces_reach_the_collector(collector: Collector, tmp_path):
    # one long document map-reduced (several map calls and a combine), two stuffed
    rows = [
        {"id": "long", "text": _document(20, "long")},
        {"id": "short-1", "text": _document(1, "first")},
        {"id": "short-2", "text": _document(1, "second")},
    ]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "summaries.jsonl"
    with mock_server(FAULTS) as base_url:
        # none of the caller's OTEL_* (a traces endpoint of theirs would win)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test", PIPELINES_MODEL="mock",
                   OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint)  # fmt: skip
        env.pop("PIPELINES_EMBEDDED_URL", None)
        # --rpm 120: the 8 requests cannot all go at once, so some wait for the budget
        cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "summary", "--input", str(src),
               "--output", str(out), "--concurrency", "3", "--rpm", "120"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        stats = httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=5).json()
    assert (stats["fault_429"], stats["fault_500"]) == (1, 1), stats
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"long", "short-1", "short-2"}
    assert records["long"]["calls"] > 2  # map-reduced: several map calls and a combine
    calls = sum(r["calls"] for r in records.values())
    assert stats["requests"] == calls + 2  # each fault cost one request more

    [run] = collector.wait_for(1, name="pipelines.run")
    assert run.parent_span_id is None
    spans = collector.wait_for(1 + len(records) + calls, trace_id=run.trace_id)
    by_id = {span.span_id: span for span in spans}
    assert [s.name for s in spans].count("pipelines.run") == 1
    assert run.attributes["pipelines.run.items_done"] == 3
    assert run.attributes["pipelines.run.items_failed"] == 0
    assert run.attributes["pipelines.pipeline"] == "summary"
    assert run.attributes["pipelines.model"].startswith("mock at http://127.0.0.1:")
    assert "gen_ai.request.model" not in run.attributes  # the requests' spans carry it

    items = {s.attributes["pipelines.item.id"]: s for s in spans if s.name == "pipelines.item"}
    assert set(items) == set(records)
    assert [s.name for s in spans].count("pipelines.item") == len(records)
    for item_id, item in items.items():
        assert item.parent_span_id == run.span_id
        assert item.attributes["pipelines.item.outcome"] == "ok"
        assert item.attributes["pipelines.item.attempts"] == records[item_id]["attempts"]

    models = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(models) == calls  # one per model call; a retried call keeps its one span
    for model in models:
        assert model.name == "chat mock"
        assert model.attributes["gen_ai.provider.name"] == "openai"
        assert model.attributes["gen_ai.request.model"] == "mock"
        assert model.attributes["gen_ai.response.model"] == "mock"
        assert model.attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert model.attributes["gen_ai.request.max_tokens"] > 0
        assert "error.type" not in model.attributes
    # each item's model spans carry exactly the usage its record counts
    for item_id, record in records.items():
        own = [m for m in models if _ancestor(m, by_id, "pipelines.item") == items[item_id].span_id]
        assert len(own) == record["calls"], item_id
        for kind in ("input_tokens", "output_tokens"):
            sent = sum(m.attributes[f"gen_ai.usage.{kind}"] for m in own)
            assert sent == record["usage"][kind], (item_id, kind)

    retries = [e for s in spans for e in s.events_named("pipelines.retry")]
    assert sorted(e.attributes["http.response.status_code"] for e in retries) == [429, 500]
    for event in retries:
        assert event.attributes["pipelines.retry.stage"] == "call"
        assert event.attributes["pipelines.retry.attempt"] == 1
        assert event.attributes["pipelines.retry.wait_s"] >= 0
        assert event.attributes["error.type"]
    throttled = [e for s in spans for e in s.events_named("pipelines.rate_limit")]
    assert [e.attributes["http.response.status_code"] for e in throttled] == [429]

    waits = [s for s in spans if s.name == "pipelines.budget.wait"]
    assert waits, sorted({s.name for s in spans})
    for wait in waits:
        assert wait.attributes["pipelines.budget.wait_s"] > 0
        assert wait.attributes["pipelines.budget.limit"] in BUDGET_LIMITS
        assert wait.attributes["pipelines.budget.queue_depth"] >= 0
        assert _ancestor(wait, by_id, "pipelines.run") == run.span_id
