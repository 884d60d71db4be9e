"""What each model request of a budgeted chat model does around it: charge mark, retries, logs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
)

from lc_async_pipelines import telemetry
from lc_async_pipelines.runner import _history as history
from lc_async_pipelines.runner.limits.budget import (
    CallTicket,
    RateBudget,
)
from lc_async_pipelines.runner.limits.flex import is_flex_refusal
from lc_async_pipelines.runner.retry import RetryPolicy, is_transient

if TYPE_CHECKING:
    from lc_async_pipelines.telemetry.instruments import Telemetry


# True inside a budgeted request (copied into LangChain's worker threads).
_CHARGED: ContextVar[bool] = ContextVar("pipelines_charged_request", default=False)

# The history entries of the model call running in this task (see _retrying).
_CALL_ENTRIES: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "pipelines_call_entries", default=None
)


@contextlib.contextmanager
def _charged() -> Iterator[None]:
    """Mark the requests made inside as budgeted (a sync provider's thread sees it too)."""
    token = _CHARGED.set(True)
    try:
        yield
    finally:
        try:
            _CHARGED.reset(token)
        except ValueError:  # left in another context (a stream's consumer): clear it there
            _CHARGED.set(False)


async def _emitting(
    chunks: AsyncIterator[ChatGenerationChunk], run_manager: AsyncCallbackManagerForLLMRun
) -> AsyncIterator[ChatGenerationChunk]:
    """Pass ``chunks`` on, telling the handlers of each token (``on_llm_new_token``)."""
    async for chunk in chunks:
        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk


def _total_tokens(message: Any) -> int | None:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage["total_tokens"]) if "total_tokens" in usage else None


def _headers(message: Any) -> dict[str, str] | None:
    metadata = getattr(message, "response_metadata", None) or {}
    found = metadata.get("headers")
    return dict(found) if found else None


def _model_name(model: Runnable[Any, Any]) -> str | None:
    while isinstance(model, RunnableBinding):
        model = model.bound
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return str(name) if name else None


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    """A model that cannot stream answers ``astream`` with one whole ``AIMessage``: as a chunk."""
    if isinstance(message, AIMessageChunk):
        return message
    fields = {k: v for k, v in message.model_dump().items() if k != "type"}
    return AIMessageChunk(**fields)


def _log_failure(exc: BaseException, began: float, extra: dict[str, Any]) -> None:
    """Log one failed request into the item's history (outside the runner: nowhere)."""
    log = history.current()
    if log is None:
        return
    entry = log.add(exc, stage="call", seconds=time.perf_counter() - began)
    entry.update(extra)
    call_entries = _CALL_ENTRIES.get()
    if call_entries is not None:
        call_entries.append(entry)


def _not_flex_refusal(exc: BaseException) -> bool:
    """A flex request's errors the run's retry policy retries: transient ones but refusals."""
    return is_transient(exc) and not is_flex_refusal(exc)


async def _retrying(
    retry: RetryPolicy | None,
    attempt: Callable[[], Awaitable[Any]],
    retry_if: Callable[[BaseException], bool] = is_transient,
) -> Any:
    """Run ``attempt`` under ``retry`` (:meth:`RetryPolicy.call`), backoffs in its entries."""
    log = history.current()
    mine: list[dict[str, Any]] = []  # this call's entries: an item's calls may run at once
    token = _CALL_ENTRIES.set(mine)

    tel = telemetry.current()
    failed = [0]  # attempts failed so far, for the retry events

    def on_retry(exc: BaseException, wait: float) -> None:
        if mine:
            mine[-1]["wait_s"] = round(wait, 3)
        if tel is not None:
            failed[0] += 1
            tel.retried(exc, wait, stage="call", attempt=failed[0])

    try:
        if retry is None:
            return await attempt()
        return await retry.call(attempt, retry_if, on_retry=on_retry)
    except Exception as exc:
        if log is not None and retry is not None and retry_if(exc):
            log.exhausted = True  # the item must not repeat its calls that succeeded
        raise
    finally:
        _CALL_ENTRIES.reset(token)


def _traced_wait(tel: Telemetry, budget: RateBudget, ticket: CallTicket) -> None:
    """Tell the telemetry of a request sent, and how long and why it waited."""
    limit = budget.held_by(ticket)
    tel.waited(ticket.last_wait_s, limit=limit, queue_depth=ticket.queue_depth)


def _note_queue(ticket: CallTicket, began: float) -> None:
    """Tell the item's history how long this request waited for the budget."""
    log = history.current()
    if log is not None and ticket.requests:
        log.note_request(ticket.queued_s, sent_at=began + ticket.queued_s)
