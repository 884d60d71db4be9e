"""LangChain messages to Anthropic Messages API params, and a Message back to a LangChain reply.

langchain-anthropic builds its request payload and reads its replies in
private helpers only (``ChatAnthropic._get_request_payload``,
``_format_messages``, ``_format_output`` in langchain-anthropic 1.7), so this
module writes the conversion for the messages this project's chains send:
system, human and AI messages whose content is text (a string, or text
blocks). Anything else (images, tool calls, tool results) is refused with a
``ValueError`` naming it: send such chains per request, not through batches.

Formats: https://docs.anthropic.com/en/api/messages (request params, the
``Message`` reply) and https://docs.anthropic.com/en/api/creating-message-batches
(a batch request is ``{"custom_id", "params"}``, params as for ``/v1/messages``
without ``stream``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult

__all__ = ["CALL_PARAMS", "error_for", "to_chat_result", "to_params"]

# Per-call keyword arguments (``llm.bind(...)``) that map onto Messages API params.
CALL_PARAMS = frozenset(
    {"max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata"}
)
_ROLES: dict[type[BaseMessage], str] = {HumanMessage: "user", AIMessage: "assistant"}


def _text_blocks(message: BaseMessage, index: int) -> list[dict[str, Any]]:
    """The message's content as Anthropic text blocks; ValueError for any other kind."""
    content = message.content
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for block in content:
        if isinstance(block, str):
            blocks.append({"type": "text", "text": block})
        elif isinstance(block, Mapping) and block.get("type") == "text":
            blocks.append({"type": "text", "text": str(block.get("text", ""))})
        else:
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            msg = f"message {index}: a {kind!r} content block cannot go through Message Batches"
            raise ValueError(msg)
    return blocks


def _plain(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text block as a plain string (what ChatAnthropic sends), else the blocks."""
    return blocks[0]["text"] if len(blocks) == 1 else blocks


def to_params(messages: Sequence[BaseMessage], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Messages API params of one call.

    Args:
        messages: the call's messages: system messages (any place; joined into
            ``system`` in order), human and AI messages with text content.
            Consecutive messages of one role are merged into one turn.
        settings: ``model``, ``max_tokens`` and any of :data:`CALL_PARAMS`
            (None values are left out), plus the model's ``model_kwargs``.

    Returns:
        ``{"model", "max_tokens", "messages", "system"?, ...}``, JSON values.

    Raises:
        ValueError: a message or content block this conversion does not handle
            (the message says which), or no user or assistant message.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if isinstance(message, SystemMessage):
            system.extend(_text_blocks(message, index))
            continue
        role = next((r for t, r in _ROLES.items() if isinstance(message, t)), None)
        if role is None or (isinstance(message, AIMessage) and message.tool_calls):
            what = "an AI message with tool calls" if role else f"a {message.type!r} message"
            msg = f"message {index}: {what} cannot go through Message Batches"
            raise ValueError(msg)
        blocks = _text_blocks(message, index)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise ValueError("a call needs a user or assistant message")
    params: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
    params["messages"] = [{"role": t["role"], "content": _plain(t["content"])} for t in turns]
    if system:
        params["system"] = _plain(system)
    return params


def to_chat_result(message: Mapping[str, Any]) -> ChatResult:
    """Return the LangChain reply of an Anthropic ``Message`` (a dict, as JSON).

    The content is the text blocks joined; ``usage_metadata`` counts cached
    input as langchain-anthropic does (``input_tokens`` is the whole input:
    uncached plus cache reads plus cache writes, with the two in
    ``input_token_details``); ``response_metadata`` has ``model_name``,
    ``stop_reason`` and ``service_tier`` (``"batch"`` from a batch).
    """
    blocks = message.get("content") or []
    text = "".join(
        str(b.get("text", "")) for b in blocks if isinstance(b, Mapping) and b.get("type") == "text"
    )
    usage = message.get("usage") or {}
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    tokens_in = int(usage.get("input_tokens") or 0) + read + written
    tokens_out = int(usage.get("output_tokens") or 0)
    usage_metadata = UsageMetadata(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        total_tokens=tokens_in + tokens_out,
        input_token_details=InputTokenDetails(cache_read=read, cache_creation=written),
    )
    model = str(message.get("model") or "")
    metadata = {
        "id": message.get("id"),
        "model": model,
        "model_name": model,
        "model_provider": "anthropic",
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
        "service_tier": message.get("service_tier") or usage.get("service_tier"),
    }
    reply = AIMessage(
        content=text,
        id=str(message.get("id") or "") or None,
        usage_metadata=usage_metadata,
        response_metadata=metadata,
    )
    return ChatResult(generations=[ChatGeneration(message=reply)])


def error_for(status: int, body: Mapping[str, Any]) -> ModelError:
    """Return the LangChain error of a failed batch result (its HTTP status and error body).

    langchain-core's provider-neutral errors, so the runner's retry knows
    them (``is_retryable``): 429 ``ModelRateLimitError``; 408, 409 and 5xx
    (503: a request the batch did not reach) ``ModelAPIError``; 401, 403,
    404 their own; any other 4xx ``ModelInvalidRequestError``.
    """
    inner = body.get("error")
    error: Mapping[str, Any] = inner if isinstance(inner, Mapping) else {}
    text = f"Message Batches: {status} {error.get('type', 'error')}: {error.get('message', '')}"
    kinds: dict[int, type[ModelError]] = {
        401: ModelAuthenticationError,
        403: ModelPermissionDeniedError,
        404: ModelNotFoundError,
        429: ModelRateLimitError,
    }
    if status in kinds:
        return kinds[status](text)
    if status >= 500 or status in (408, 409):
        return ModelAPIError(text)
    return ModelInvalidRequestError(text)
