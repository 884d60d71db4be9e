"""OpenAI's Batch API as a batch provider: upload a JSONL file, create a batch, read its files.

https://platform.openai.com/docs/guides/batch. The batched chat model is a
copy of the ``ChatOpenAI`` whose client sends through our HTTP transport
(:class:`~lc_async_pipelines.runner.batch._transport.Interceptor`): the
request body the SDK would have sent is the batch line's body.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel

from lc_async_pipelines._scrub import error_text, scrub_url
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.batch._files import (
    BatchRequest,
    LineResult,
    input_file,
    parse_results,
)
from lc_async_pipelines.runner.batch._transport import Interceptor, as_result
from lc_async_pipelines.runner.batch.provider import BatchProvider, BatchStatus, Route

__all__ = ["OpenAIBatches"]

_LIST_PAGES = 20  # batches looked through (100 a page) for one recorded without its id
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def _status(batch: Any) -> BatchStatus:
    """What the state file keeps of an ``openai.types.Batch``."""
    error = None
    if batch.errors and batch.errors.data:
        first = batch.errors.data[0]
        error = f"{first.code}: {first.message}"
    return BatchStatus(
        id=batch.id,
        status=batch.status,
        ended=batch.status in _TERMINAL,
        fields={
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            # how far it got (lanes read it: BatchSession.progress)
            "request_counts": (
                batch.request_counts.model_dump(mode="json") if batch.request_counts else None
            ),
        },
        error=error,
    )


class OpenAIBatches(BatchProvider):
    """OpenAI's Batch API (and compatible servers) under a ``ChatOpenAI``."""

    name = "openai"
    keeps_input = True

    def __init__(
        self, chat_model: BaseChatModel, request_timeout_s: float, completion_window: str = "24h"
    ) -> None:
        """Use ``chat_model``'s OpenAI client (its key, base URL and headers) for the batches."""
        self._window = completion_window
        root = getattr(chat_model, "root_async_client", None)
        if not isinstance(root, openai.AsyncOpenAI):
            msg = f"not an OpenAI-compatible chat model: {type(chat_model).__name__}"
            raise ConfigurationError(msg)
        self._model = chat_model
        self._root = root
        self._control = root.with_options(max_retries=2, timeout=request_timeout_s)
        self._create_client = root.with_options(max_retries=0, timeout=request_timeout_s)
        given = getattr(chat_model, "http_async_client", None)
        self._owned_direct = given is None
        self._direct: Any = given if given is not None else openai.DefaultAsyncHttpxClient()
        self._http: Any = None

    @staticmethod
    def accepts(chat_model: BaseChatModel) -> bool:
        """True for a chat model on an OpenAI client (``ChatOpenAI``)."""
        return isinstance(getattr(chat_model, "root_async_client", None), openai.AsyncOpenAI)

    def batched_model(self, route: Route, on_direct: Callable[[], None]) -> BaseChatModel:
        """A copy of the ``ChatOpenAI`` whose chat requests go to ``route``."""

        async def send_unbatched(request: Any) -> Any:
            on_direct()
            return await self._direct.send(request)

        transport = Interceptor(route, self._direct.send, send_unbatched)
        self._http = openai.DefaultAsyncHttpxClient(transport=transport)  # type: ignore[arg-type]
        batched = self._root.with_options(http_client=self._http)
        return self._model.model_copy(
            update={
                "root_async_client": batched,
                "async_client": batched.chat.completions,
                "streaming": False,
                "disable_streaming": True,
            }
        )

    async def open(self) -> None:
        """Check ``GET /batches`` answers."""
        try:
            await self._control.batches.list(limit=1)
        except openai.APIStatusError as exc:
            msg = (
                f"the endpoint has no usable Batch API: GET /batches answered "
                f"{exc.status_code} ({error_text(exc)})"
            )
            raise ConfigurationError(msg) from None
        except openai.APIConnectionError as exc:
            where = scrub_url(str(self._control.base_url))
            msg = f"cannot reach the Batch API at {where} ({type(exc).__name__}); is it running?"
            raise ConfigurationError(msg) from None

    async def aclose(self) -> None:
        """Close the batched HTTP client, and the direct one if it is ours."""
        if self._http is not None:
            await self._http.aclose()
        if self._owned_direct:
            await self._direct.aclose()

    def request(self, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchRequest:
        """An input-file line: ``{"custom_id", "method", "url", "body"}``."""
        return BatchRequest.make(custom_id, endpoint, body)

    async def upload(self, part: list[BatchRequest]) -> dict[str, Any]:
        """Upload the part's input file (``purpose=batch``)."""
        uploaded = await self._control.files.create(
            file=(f"lc-pipelines-{int(time.time())}.jsonl", input_file(part), "application/jsonl"),
            purpose="batch",
        )
        return {"input_file_id": uploaded.id, "output_file_id": None, "error_file_id": None}

    async def create(
        self, entry: dict[str, Any], part: list[BatchRequest] | None, metadata: dict[str, str]
    ) -> BatchStatus:
        """Create the batch of the entry's uploaded input file."""
        created = await self._create_client.batches.create(
            input_file_id=str(entry["input_file_id"]),
            endpoint=entry["endpoint"],
            completion_window=self._window,  # type: ignore[arg-type]
            metadata=metadata or None,
        )
        return _status(created)

    async def find(self, entry: dict[str, Any], taken: set[str]) -> BatchStatus | None:
        """The batch made from the entry's input file, among the newest 2,000."""
        oldest = int(entry.get("created_at", 0)) - 3600  # clocks may differ
        seen = 0
        async for found in self._control.batches.list(limit=100):
            if found.input_file_id == entry["input_file_id"]:
                return _status(found)
            seen += 1
            if found.created_at < oldest or seen >= 100 * _LIST_PAGES:
                break
        return None

    async def retrieve(self, batch_id: str) -> BatchStatus:
        """``GET /batches/{id}``."""
        return _status(await self._control.batches.retrieve(batch_id))

    async def results(self, entry: dict[str, Any]) -> dict[str, LineResult]:
        """Download and parse the output and error files."""
        results: dict[str, LineResult] = {}
        for key in ("output_file_id", "error_file_id"):
            if entry.get(key):
                content = await self._control.files.content(str(entry[key]))
                results.update(parse_results(content.content))
        return results

    async def cancel(self, batch_id: str) -> BatchStatus:
        """``POST /batches/{id}/cancel``."""
        return _status(await self._control.batches.cancel(batch_id))

    def as_result(self, exc: BaseException) -> LineResult:
        """An OpenAI error as the error response of each call it concerns."""
        return as_result(exc)
