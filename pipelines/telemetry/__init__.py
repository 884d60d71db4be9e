"""OpenTelemetry traces and metrics of runs, items and model requests (the ``[otel]`` extra).

Off unless switched on, and then free: :func:`current` is None and the
runner, the budgeted model and the service skip every telemetry step (one
global read a call). Nothing here imports OpenTelemetry until telemetry is
switched on, so the base install never loads it.

Switched on by:

- :func:`configure_telemetry`: an OTLP/HTTP exporter to ``endpoint`` (or to
  where the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` say), or the providers given (tests,
  an app's own); ``pipelines run|news|serve --trace URL`` call it;
- :func:`enable_from_environment`, which
  :func:`~lc_async_pipelines.session.model_session` calls: the same
  variables, or an app that already set a global ``TracerProvider``.

What is emitted (span names, attributes, events, metrics, units):
docs/telemetry.md and :mod:`~lc_async_pipelines.telemetry.names`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.errors import ConfigurationError

if TYPE_CHECKING:
    from lc_async_pipelines.telemetry.instruments import Telemetry

__all__ = [
    "configure_telemetry",
    "current",
    "enable_from_environment",
    "shutdown_telemetry",
]

log = logging.getLogger(__name__)

_ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_ACTIVE: Telemetry | None = None
_WARNED = False


def current() -> Telemetry | None:
    """Return the active :class:`~lc_async_pipelines.telemetry.instruments.Telemetry`, or None."""
    return _ACTIVE


def _installed() -> bool:
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        return False
    return True


def configure_telemetry(
    endpoint: str | None = None,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
) -> Telemetry:
    """Switch telemetry on for this process, replacing any earlier configuration.

    Args:
        endpoint: the OTLP/HTTP base URL (``http://localhost:4318``): spans go
            to ``{endpoint}/v1/traces`` and metrics to ``{endpoint}/v1/metrics``,
            as with ``OTEL_EXPORTER_OTLP_ENDPOINT``. None: the exporters read
            the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves (metrics
            are exported only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set).
        tracer_provider: an ``opentelemetry.trace.TracerProvider`` to use
            instead of building one (an app's own, or one with an
            ``InMemorySpanExporter`` in tests); not shut down here.
        meter_provider: likewise an ``opentelemetry.metrics.MeterProvider``
            (None with a ``tracer_provider`` given: no metrics).
        capture_content: record prompt and reply text on model spans
            (``gen_ai.input.messages``, ``gen_ai.output.messages``). None: as
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` says.

    Returns:
        The active telemetry (also what :func:`current` returns). Call
        :func:`shutdown_telemetry` before the process ends to flush what is
        still buffered (the providers built here also flush at exit).

    Raises:
        ConfigurationError: the ``[otel]`` extra is not installed.
    """
    global _ACTIVE
    if not _installed():
        msg = (
            "telemetry needs the otel extra: pip install 'lc-async-pipelines[otel]' "
            "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
        )
        raise ConfigurationError(msg)
    from lc_async_pipelines.telemetry._setup import build

    shutdown_telemetry()
    _ACTIVE = build(endpoint, tracer_provider, meter_provider, capture_content)
    return _ACTIVE


def enable_from_environment() -> Telemetry | None:
    """Switch telemetry on if the environment asks for it; return what is active (or None).

    Already active: kept. Else ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set (and ``OTEL_SDK_DISABLED`` not
    ``true``): :func:`configure_telemetry` from them. Else an app that has
    already imported OpenTelemetry and set a global SDK ``TracerProvider``:
    that provider and the global ``MeterProvider``. Otherwise nothing is
    imported and telemetry stays off. The extra missing while a variable asks
    for it: a warning on this module's logger, once, and off.
    """
    global _WARNED
    if _ACTIVE is not None:
        return _ACTIVE
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if any(os.environ.get(name) for name in _ENDPOINT_ENV):
        if _installed():
            return configure_telemetry()
        if not _WARNED:
            _WARNED = True
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed: "
                "no telemetry (pip install 'lc-async-pipelines[otel]')"
            )
        return None
    if _sdk_provider_is_global():  # only an app that set the SDK's provider itself
        from lc_async_pipelines.telemetry._setup import global_providers

        providers = global_providers()
        if providers is not None:
            return configure_telemetry(tracer_provider=providers[0], meter_provider=providers[1])
    return None


def _sdk_provider_is_global() -> bool:
    """True if the SDK is loaded and its ``TracerProvider`` is the global one.

    Checked without importing the exporters (about 0.1 s): langsmith loads the
    SDK whenever it is installed, with the global provider left a proxy.
    """
    sdk_trace = sys.modules.get("opentelemetry.sdk.trace")
    if sdk_trace is None:
        return False
    from opentelemetry import trace  # loaded with the SDK

    return isinstance(trace.get_tracer_provider(), sdk_trace.TracerProvider)


def shutdown_telemetry() -> None:
    """Switch telemetry off: flush and shut down the providers built here (not an app's own)."""
    global _ACTIVE
    active, _ACTIVE = _ACTIVE, None
    if active is not None:
        active.shutdown()
