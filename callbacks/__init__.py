"""Async callback handlers: terminal streaming, an ``asyncio.Queue`` feed, and metrics.

Each subclasses ``langchain_core.callbacks.AsyncCallbackHandler`` and travels in
``config["callbacks"]``.
"""

from callbacks.metrics import CallMetrics, MetricsCallbackHandler
from callbacks.queue import QueueCallbackHandler, StreamEvent
from callbacks.streaming import TerminalStreamHandler

__all__ = [
    "CallMetrics",
    "MetricsCallbackHandler",
    "QueueCallbackHandler",
    "StreamEvent",
    "TerminalStreamHandler",
]
