"""Async callback handlers: terminal streaming, an ``asyncio.Queue`` feed, and metrics.

Each subclasses :class:`TaggedCallbackHandler` (an
``langchain_core.callbacks.AsyncCallbackHandler`` that tags every model call
with its item or top-level invocation) and travels in ``config["callbacks"]``.
Subclass :class:`TaggedCallbackHandler` for a handler of your own.
"""

from lc_async_pipelines.callbacks.base import (
    ITEM_KEY,
    TaggedCallbackHandler,
    Token,
    asks_for_tokens,
    item_of,
    token_text,
    usage_of,
)
from lc_async_pipelines.callbacks.metrics import CallMetrics, MetricsCallbackHandler
from lc_async_pipelines.callbacks.queue import QueueCallbackHandler, StreamEvent
from lc_async_pipelines.callbacks.streaming import TerminalStreamHandler

__all__ = [
    "ITEM_KEY",
    "CallMetrics",
    "MetricsCallbackHandler",
    "QueueCallbackHandler",
    "StreamEvent",
    "TaggedCallbackHandler",
    "TerminalStreamHandler",
    "Token",
    "asks_for_tokens",
    "item_of",
    "token_text",
    "usage_of",
]
