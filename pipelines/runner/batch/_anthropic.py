"""Anthropic's Message Batches as a batch provider, under a ``ChatAnthropic``.

https://docs.anthropic.com/en/docs/build-with-claude/batch-processing: a
batch is created with its requests inline (``POST /v1/messages/batches``,
``{"custom_id", "params"}`` each, ``custom_id`` at most 64 characters of
``[a-zA-Z0-9_-]``: ours are 32 hex digits, a dash and a number), polled
until its ``processing_status`` is ``ended``, and its results read as JSON
lines from its ``results_url``, each ``succeeded``, ``errored``,
``canceled`` or ``expired``. All through the ``anthropic`` SDK's
``client.messages.batches`` (create, retrieve, list, results, cancel).

langchain-anthropic gives no public way to put a transport under its client
or to build its request payload, so the batched model is a chat model of
ours (:class:`BatchedChatAnthropic`) that converts each call
(:mod:`~lc_async_pipelines.runner.batch._anthropic_format`) and, for a call
sent on its own, calls the original ``ChatAnthropic``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import anthropic
from langchain_anthropic import ChatAnthropic
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from lc_async_pipelines._scrub import error_text, scrub_url
from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.batch._anthropic_format import (
    CALL_PARAMS,
    error_for,
    to_chat_result,
    to_params,
)
from lc_async_pipelines.runner.batch._files import (
    BatchRequest,
    LineResult,
    canonical_json,
    failed,
)
from lc_async_pipelines.runner.batch.provider import BatchProvider, BatchStatus, Route
from lc_async_pipelines.runner.retry import is_transient

__all__ = ["ENDPOINT", "AnthropicBatches", "BatchedChatAnthropic"]

ENDPOINT = "/v1/messages"
_LIST_LIMIT = 2000  # batches looked through for one created without its id recorded
_TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# An errored result's error type, as the HTTP status of the same error on /v1/messages
# (https://docs.anthropic.com/en/api/errors).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
# ChatAnthropic settings this conversion does not carry into a batch request.
_UNSUPPORTED = ("thinking", "betas", "output_config")


class BatchedChatAnthropic(BaseChatModel):
    """A ``ChatAnthropic``'s calls as Message Batches requests (made by :class:`AnthropicBatches`).

    Attributes:
        model: the Anthropic model name.
        max_tokens: cap on generated tokens per call.
        temperature: sampling temperature (None: the API's).
        top_k: top-k sampling (None: the API's).
        top_p: nucleus sampling (None: the API's).
        stop_sequences: stop sequences (None: none).
        model_kwargs: other Messages API params, sent as given.
        batch_route: the session's entry for each call (fields, not private
            attributes: ``with_budget`` rebuilds a model from its fields).
        direct_model: the ``ChatAnthropic`` a call sent on its own goes to.
        on_direct: called for each call sent on its own.
    """

    model: str
    max_tokens: int
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    batch_route: Route = Field(exclude=True, repr=False)
    direct_model: BaseChatModel = Field(exclude=True, repr=False)
    on_direct: Callable[[], None] = Field(exclude=True, repr=False)

    @property
    def _llm_type(self) -> str:
        return "anthropic-chat-batch"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # the LLM cache's key (langchain-core's llm_string): without these, two
        # models or temperatures would share cache entries
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "stop_sequences": self.stop_sequences,
            "model_kwargs": self.model_kwargs,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="anthropic",
            ls_model_name=self.model,
            ls_model_type="chat",
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("calls through Message Batches are async only (ainvoke)")

    def _settings(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - CALL_PARAMS - {"stop"})
        if unknown:
            msg = f"{unknown} cannot go through Message Batches (bound to the model)"
            raise ValueError(msg)
        settings: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "stop_sequences": stop or kwargs.pop("stop", None) or self.stop_sequences,
            **self.model_kwargs,
        }
        settings.update({k: v for k, v in kwargs.items() if k != "stop"})
        return settings

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Answer one call from a batch (or, when the session says so, on its own).

        Raises:
            ValueError: a message or argument the conversion does not carry.
            langchain_core.exceptions.ModelError: the batch's result was an
                error (see :func:`~lc_async_pipelines.runner.batch._anthropic_format.error_for`).
        """
        params = to_params(messages, self._settings(stop, dict(kwargs)))
        result = await self.batch_route(ENDPOINT, params)
        if result is None:  # retried on its own: the original model, the standard price
            self.on_direct()
            direct = self.direct_model
            if isinstance(direct, ChatAnthropic) and direct.model != self.model:  # a fallback
                direct = direct.model_copy(update={"model": self.model})
            sent = await direct.agenerate([messages], stop=stop, **kwargs)
            generation = sent.generations[0][0]
            assert isinstance(generation, ChatGeneration)
            return ChatResult(generations=[generation], llm_output=sent.llm_output)
        if not result.ok:
            raise error_for(result.status, result.body)
        return to_chat_result(result.body)


def _status(batch: Any) -> BatchStatus:
    """What the state file keeps of an ``anthropic.types.messages.MessageBatch``."""
    return BatchStatus(
        id=batch.id,
        status=batch.processing_status,
        ended=batch.processing_status == "ended",
        fields={"request_counts": batch.request_counts.model_dump(mode="json")},
    )


def _result(item: dict[str, Any]) -> LineResult:
    """One line of a batch's results as the HTTP response it stands for."""
    result = item.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded" and isinstance(result.get("message"), dict):
        return LineResult(200, result["message"])
    if kind == "errored":
        outer: dict[str, Any] = result.get("error") or {}
        inner = outer.get("error")
        error: dict[str, Any] = inner if isinstance(inner, dict) else outer
        status = _ERROR_STATUS.get(str(error.get("type")), 500)
        return LineResult(status, {"type": "error", "error": error})
    code = "batch_cancelled" if kind == "canceled" else "batch_expired"
    return failed(503, f"the batch ended before this request ran ({kind})", code)


class AnthropicBatches(BatchProvider):
    """Anthropic's Message Batches under a ``ChatAnthropic`` (its key, base URL and headers)."""

    name = "anthropic"
    keeps_input = False

    def __init__(self, chat_model: BaseChatModel, request_timeout_s: float) -> None:
        """Open an ``anthropic.AsyncAnthropic`` with the chat model's settings.

        Raises:
            ConfigurationError: not a ``ChatAnthropic``, or it sets ``thinking``,
                ``betas`` or ``output_config``, which this conversion does not carry.
        """
        if not isinstance(chat_model, ChatAnthropic):
            msg = f"not a ChatAnthropic: {type(chat_model).__name__}"
            raise ConfigurationError(msg)
        given = [name for name in _UNSUPPORTED if getattr(chat_model, name, None)]
        if given:
            msg = f"--batch-api: ChatAnthropic with {', '.join(given)} cannot go through batches"
            raise ConfigurationError(msg)
        self._model = chat_model
        key = chat_model.anthropic_api_key.get_secret_value() or None
        client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=chat_model.anthropic_api_url,
            default_headers=dict(chat_model.default_headers or {}),
            timeout=request_timeout_s,
            max_retries=2,
        )
        self._control = client
        self._create_client = client.with_options(max_retries=0)

    @staticmethod
    def accepts(chat_model: BaseChatModel) -> bool:
        """True for a ``ChatAnthropic``."""
        return isinstance(chat_model, ChatAnthropic)

    def batched_model(self, route: Route, on_direct: Callable[[], None]) -> BaseChatModel:
        """A :class:`BatchedChatAnthropic` with the ``ChatAnthropic``'s sampling settings."""
        source = self._model
        batched = BatchedChatAnthropic(
            model=source.model,
            max_tokens=source.max_tokens or 1024,
            temperature=source.temperature,
            top_k=source.top_k,
            top_p=source.top_p,
            stop_sequences=source.stop_sequences,
            model_kwargs=dict(source.model_kwargs),
            batch_route=route,
            direct_model=source,
            on_direct=on_direct,
        )
        return batched

    async def open(self) -> None:
        """Check ``GET /v1/messages/batches`` answers."""
        try:
            await self._control.messages.batches.list(limit=1)
        except anthropic.APIStatusError as exc:
            what = (
                "the key was refused"
                if exc.status_code in (401, 403)
                else "the endpoint has no usable Message Batches API"
            )
            msg = f"{what}: GET /v1/messages/batches answered {exc.status_code} ({error_text(exc)})"
            raise ConfigurationError(msg) from None
        except anthropic.APIConnectionError as exc:
            where = scrub_url(str(self._control.base_url))
            msg = (
                f"cannot reach the Message Batches API at {where} ({type(exc).__name__}); "
                "is it running?"
            )
            raise ConfigurationError(msg) from None

    async def aclose(self) -> None:
        """Close the SDK client."""
        await self._control.close()

    def request(self, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchRequest:
        """A batch request: ``{"custom_id", "params"}``."""
        line = canonical_json({"custom_id": custom_id, "params": body}) + "\n"
        tokens = estimate_tokens(canonical_json([body.get("system"), body.get("messages")]))
        return BatchRequest(custom_id, endpoint, body, line.encode(), tokens)

    async def create(
        self, entry: dict[str, Any], part: list[BatchRequest] | None, metadata: dict[str, str]
    ) -> BatchStatus:
        """``POST /v1/messages/batches`` with the requests inline (batches carry no metadata)."""
        if part is None:
            raise ValueError("an Anthropic batch is created with its requests")
        requests: Any = [{"custom_id": r.custom_id, "params": r.body} for r in part]
        return _status(await self._create_client.messages.batches.create(requests=requests))

    async def find(self, entry: dict[str, Any], taken: set[str]) -> BatchStatus | None:
        """A batch created since the entry was recorded, of as many requests, not ``taken``.

        Anthropic's batches carry no metadata and list no requests, so this is
        the best match there is; a wrong one only costs its lines a retry
        (their ``custom_id`` s are not in its results).
        """
        since = float(entry.get("created_at", 0)) - 60  # clocks may differ
        seen = 0
        async for found in self._control.messages.batches.list(limit=100):
            created = found.created_at
            stamp = created.timestamp() if isinstance(created, datetime) else float(created)
            counts = found.request_counts
            total = (
                counts.processing + counts.succeeded + counts.errored
                + counts.canceled + counts.expired
            )  # fmt: skip
            if found.id not in taken and stamp >= since and total == entry.get("requests"):
                return _status(found)
            seen += 1
            if stamp < since or seen >= _LIST_LIMIT:
                break
        return None

    async def retrieve(self, batch_id: str) -> BatchStatus:
        """``GET /v1/messages/batches/{id}``."""
        return _status(await self._control.messages.batches.retrieve(batch_id))

    async def results(self, entry: dict[str, Any]) -> dict[str, LineResult]:
        """The results JSONL (its ``results_url``), ``custom_id -> LineResult``."""
        results: dict[str, LineResult] = {}
        async for item in await self._control.messages.batches.results(str(entry["id"])):
            results[item.custom_id] = _result(item.model_dump(mode="json"))
        return results

    async def cancel(self, batch_id: str) -> BatchStatus:
        """``POST /v1/messages/batches/{id}/cancel``."""
        return _status(await self._control.messages.batches.cancel(batch_id))

    def is_transient(self, exc: BaseException) -> bool:
        """Anthropic's 408/409/429/5xx/529 and lost connections, or the runner's rule."""
        if isinstance(exc, anthropic.APIStatusError):
            return exc.status_code in _TRANSIENT_STATUS
        return isinstance(exc, anthropic.APIConnectionError) or is_transient(exc)
