"""Telemetry switched on around a test, into memory: the spans and metrics it made."""

from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lc_async_pipelines import telemetry
from tests.unit.service.conftest import app_for  # noqa: F401  (the service's fixture, here too)


@dataclass
class Captured:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        if name is None:
            return found
        return [s for s in found if s.name == name or s.name.startswith(name + " ")]

    def metric_points(self, name: str) -> list:
        points = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def total(self, name: str, **attributes) -> float:
        return sum(
            getattr(p, "value", None) if hasattr(p, "value") else p.sum
            for p in self.metric_points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        )


def capture(**options) -> Captured:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure_telemetry(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        **options,
    )
    return Captured(exporter, reader)


@pytest.fixture
def traced():
    """Telemetry on, into memory; off again after the test."""
    captured = capture()
    try:
        yield captured
    finally:
        telemetry.shutdown_telemetry()
