"""Build the tracer and meter providers with their OTLP/HTTP exporters (OpenTelemetry imported)."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from lc_async_pipelines._version import __version__
from lc_async_pipelines.telemetry.instruments import Telemetry
from lc_async_pipelines.telemetry.names import CAPTURE_CONTENT_ENV

_METRICS_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def _resource() -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which win
    attributes: dict[str, Any] = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = "lc-async-pipelines"
    return Resource.create(attributes)


def _providers(endpoint: str | None) -> tuple[TracerProvider, MeterProvider | None]:
    """Providers exporting over OTLP/HTTP to ``endpoint`` (None: where the env says)."""
    resource = _resource()
    base = endpoint.rstrip("/") if endpoint else None
    spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces") if base else OTLPSpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    if base is None and not any(os.environ.get(name) for name in _METRICS_ENV):
        return tracer_provider, None
    exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics") if base else OTLPMetricExporter()
    reader = PeriodicExportingMetricReader(exporter)
    return tracer_provider, MeterProvider(resource=resource, metric_readers=[reader])


def build(
    endpoint: str | None,
    tracer_provider: Any,
    meter_provider: Any,
    capture_content: bool | None,
) -> Telemetry:
    """The :class:`Telemetry` of :func:`~lc_async_pipelines.telemetry.configure_telemetry`."""
    owned = tracer_provider is None
    if owned:
        tracer_provider, meter_provider = _providers(endpoint)
    if capture_content is None:
        capture_content = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"
    return Telemetry(
        tracer_provider,
        meter_provider,
        capture_content=capture_content,
        owned=owned,
    )


def global_providers() -> tuple[Any, Any] | None:
    """The app's global SDK tracer and meter providers, or None while the global one is a proxy."""
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        return None
    return tracer_provider, metrics.get_meter_provider()
