"""Set fields on the chat models inside a runnable (bound, with fallbacks), copying it."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBinding, RunnableWithFallbacks


def update_chat_models(runnable: Runnable[Any, Any], **fields: Any) -> Runnable[Any, Any]:
    """Return a copy of ``runnable`` whose chat models have ``fields`` set.

    Walks ``RunnableBinding`` (``.bind``, ``.with_config``) and
    ``RunnableWithFallbacks``; the original objects are left as they were.

    Raises:
        TypeError: no chat model found where one was expected.
    """
    if isinstance(runnable, BaseChatModel):
        return runnable.model_copy(update=fields)
    if isinstance(runnable, RunnableBinding):
        return runnable.model_copy(update={"bound": update_chat_models(runnable.bound, **fields)})
    if isinstance(runnable, RunnableWithFallbacks):
        return runnable.model_copy(
            update={
                "runnable": update_chat_models(runnable.runnable, **fields),
                "fallbacks": [update_chat_models(f, **fields) for f in runnable.fallbacks],
            }
        )
    msg = (
        f"expected a chat model (optionally bound or with fallbacks), got {type(runnable).__name__}"
    )
    raise TypeError(msg)


def bound_max_tokens(runnable: Runnable[Any, Any]) -> int | None:
    """Return the ``max_tokens`` a call through ``runnable`` would send, if any is set.

    A bound ``max_tokens`` (``.bind``) wins over the model's own field; with
    fallbacks, the primary model's.
    """
    if isinstance(runnable, RunnableBinding):
        value = runnable.kwargs.get("max_tokens")
        return int(value) if value else bound_max_tokens(runnable.bound)
    if isinstance(runnable, RunnableWithFallbacks):
        return bound_max_tokens(runnable.runnable)
    value = getattr(runnable, "max_tokens", None)
    return int(value) if isinstance(value, int) and value > 0 else None
