"""How a :class:`~lc_async_pipelines.runner.batch.session.BatchSession` batches, what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.batch._files import BatchLimits
from lc_async_pipelines.runner.checks import check_number

__all__ = ["BATCH_STATE_FORMAT", "BatchLimits", "BatchOptions", "BatchStats"]

BATCH_STATE_FORMAT = 1
"""Version of the ``OUTPUT.batches.json`` layout."""


@dataclass(frozen=True)
class BatchOptions:
    """How a :class:`BatchSession` batches calls.

    Attributes:
        state_path: where the batches are recorded for a resume
            (:func:`batches_path`); None: nowhere (a killed run pays again).
        retry: where a failed line is tried again: ``"batch"`` (the next batch)
            or ``"request"`` (sent on its own, at the standard price).
        settle_s: a stage closes once no call has been parked, and the process
            has been idle (under half a core), for this long, seconds.
        window_s: a stage closes at the latest this long after its first call, seconds.
        limits: what one batch may hold, and the enqueued-token limit per model.
        poll_initial_s: first wait between polls of a batch, seconds; doubled
            each time up to ``poll_max_s``.
        poll_max_s: longest wait between polls, seconds.
        completion_window: the batches' window (OpenAI takes ``"24h"``).
        metadata: metadata set on every batch (at most 16 short strings).
        request_timeout_s: timeout of each files or batches request, seconds.

    Raises:
        ConfigurationError: a value out of range (the message names it).
    """

    state_path: Path | None = None
    retry: Literal["batch", "request"] = "batch"
    settle_s: float = 2.0
    window_s: float = 600.0
    limits: BatchLimits = field(default_factory=BatchLimits)
    poll_initial_s: float = 1.0
    poll_max_s: float = 60.0
    completion_window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    request_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.retry not in ("batch", "request"):
            msg = f"retry must be 'batch' or 'request', got {self.retry!r}"
            raise ConfigurationError(msg)
        for name in ("settle_s", "poll_initial_s"):
            check_number(name, getattr(self, name), minimum=0)
        for name in ("window_s", "poll_max_s", "request_timeout_s"):
            check_number(name, getattr(self, name), minimum=0, strict=True)
        check_number("max_requests", self.limits.max_requests, minimum=1, whole=True)
        check_number("max_bytes", self.limits.max_bytes, minimum=1, whole=True)
        check_number("max_tokens", self.limits.max_tokens, minimum=1, whole=True)


@dataclass
class BatchStats:
    """What a :class:`BatchSession` did (this process only).

    Attributes:
        batches_created: batches created (one recorded without its id and found
            on the endpoint is not counted).
        batches_resumed: batches of earlier sessions waited on.
        requests_batched: calls put into new batches.
        requests_resumed: calls answered by a batch of an earlier session.
        requests_direct: calls sent on their own (``retry="request"``).
        lines_failed: results that were errors.
    """

    batches_created: int = 0
    batches_resumed: int = 0
    requests_batched: int = 0
    requests_resumed: int = 0
    requests_direct: int = 0
    lines_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return dict(self.__dict__)
