"""The plug-in seam of the batch layer: one provider's batch API behind one interface.

:class:`~lc_async_pipelines.runner.batch.session.BatchSession` does what is
common to every provider (parking calls, closing stages, splitting them under
the limits, the state file, resuming, handing results back); a
:class:`BatchProvider` does what differs: the chat model whose calls are
parked, the request line, creating, finding, polling, reading and cancelling
a batch. Two ship with the package, chosen by
:func:`~lc_async_pipelines.runner.batch.providers.provider_for` from the
chat model: OpenAI's Batch API (``ChatOpenAI``: ``/v1/files`` and
``/v1/batches``) and Anthropic's Message Batches (``ChatAnthropic``:
``/v1/messages/batches``). Another is a subclass handed to
``BatchSession(..., provider=...)``, as an httpx transport is handed to a client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel

from lc_async_pipelines.runner.batch._files import BatchRequest, LineResult, failed
from lc_async_pipelines.runner.retry import is_transient

__all__ = [
    "BatchProvider",
    "BatchRequest",
    "BatchStatus",
    "LineResult",
    "Route",
]

Route = Callable[[str, dict[str, Any]], Awaitable[LineResult | None]]
"""The session's entry for one call: ``(endpoint, request body) -> result``.

None means "send it on its own" (``retry="request"`` after a failed line).
"""


@dataclass(frozen=True)
class BatchStatus:
    """A batch as the provider reports it, in the words the state file keeps.

    Attributes:
        id: the provider's batch id.
        status: the provider's status word (OpenAI: ``in_progress``,
            ``completed``, ``expired``, ...; Anthropic: ``in_progress``,
            ``canceling``, ``ended``).
        ended: True once no result will change (the results can be read).
        fields: what else the state file records (output file ids, request
            counts), JSON values.
        error: why the whole batch failed, or None.
    """

    id: str
    status: str
    ended: bool
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class BatchProvider(ABC):
    """One provider's batch API, as :class:`BatchSession` uses it.

    Attributes:
        name: recorded with each batch in the state file (``"openai"``, ``"anthropic"``).
        keeps_input: True when the provider stores a batch's requests before it
            is created (OpenAI's uploaded input file), so a batch recorded
            without its id can still be created by a resumed run; False when
            requests travel with the create call (Anthropic): such a batch is
            looked for, and its calls sent again if it is not found.
    """

    name: ClassVar[str]
    keeps_input: ClassVar[bool]

    @abstractmethod
    def batched_model(self, route: Route, on_direct: Callable[[], None]) -> BaseChatModel:
        """Return a copy of the chat model whose calls go to ``route`` instead of the provider.

        ``on_direct`` is called for each call sent on its own (``route`` answered None).
        """

    @abstractmethod
    async def open(self) -> None:
        """Check that the batch API answers.

        Raises:
            ConfigurationError: it cannot be reached, or has no batch API.
        """

    async def aclose(self) -> None:  # noqa: B027 (a provider with nothing to close)
        """Close the clients this provider opened."""

    @abstractmethod
    def request(self, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchRequest:
        """Return the batch request of one call (its line as the provider takes it)."""

    async def upload(self, part: list[BatchRequest]) -> dict[str, Any]:
        """Store ``part`` at the provider before its batch is created, if it takes that step.

        Returns:
            What the state file records of it (``{"input_file_id": ...}``); {} by default.
        """
        return {}

    @abstractmethod
    async def create(
        self, entry: dict[str, Any], part: list[BatchRequest] | None, metadata: dict[str, str]
    ) -> BatchStatus:
        """Create the batch of ``entry``: its requests ``part`` (None: a resumed run lacks them).

        Not retried by the SDK: a lost answer would create a second batch; the
        session looks for the first (:meth:`find`) before trying again.
        """

    @abstractmethod
    async def find(self, entry: dict[str, Any], taken: set[str]) -> BatchStatus | None:
        """The provider's batch made for ``entry`` (not one of the ids ``taken``), or None."""

    @abstractmethod
    async def retrieve(self, batch_id: str) -> BatchStatus:
        """The batch's status now."""

    @abstractmethod
    async def results(self, entry: dict[str, Any]) -> dict[str, LineResult]:
        """The results of an ended batch: ``custom_id -> LineResult`` (as HTTP responses).

        A request the batch did not reach (expired, cancelled) is a 503; a
        failed one keeps the provider's status; a request absent is left out.
        """

    @abstractmethod
    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to cancel the batch; its unreached requests end cancelled."""

    def is_transient(self, exc: BaseException) -> bool:
        """True when a retry of a batch API call that raised ``exc`` can work."""
        return is_transient(exc)

    def as_result(self, exc: BaseException) -> LineResult:
        """A failure of the batch API, as the error response of each call it concerns."""
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            body = getattr(exc, "body", None)
            inner = body.get("error") if isinstance(body, dict) else None
            error: dict[str, Any] = inner if isinstance(inner, dict) else {}
            return LineResult(status, {"error": {**error, "message": f"Batch API: {exc}"}})
        code = 503 if self.is_transient(exc) else 500
        return failed(code, f"Batch API: {type(exc).__name__}: {exc}", "batch_api_error")
