"""Async callback handlers: terminal streaming, an ``asyncio.Queue`` feed, and metrics.

Each subclasses ``langchain_core.callbacks.AsyncCallbackHandler`` and travels in
``config["callbacks"]``.
"""

from lc_async_pipelines.callbacks.metrics import CallMetrics, MetricsCallbackHandler
from lc_async_pipelines.callbacks.queue import QueueCallbackHandler, StreamEvent
from lc_async_pipelines.callbacks.streaming import TerminalStreamHandler

__all__ = [
    "CallMetrics",
    "MetricsCallbackHandler",
    "QueueCallbackHandler",
    "StreamEvent",
    "TerminalStreamHandler",
]
