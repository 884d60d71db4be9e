"""Find and change the chat models inside a runnable (bound, with fallbacks, in a chain)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableParallel,
    RunnableSequence,
    RunnableWithFallbacks,
)


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


def largest_max_tokens(runnable: Runnable[Any, Any]) -> int | None:
    """Return the largest ``max_tokens`` bound anywhere in a chain, or None.

    Walks the public structure of LCEL runnables (a sequence's ``steps``, a
    parallel's ``steps__``, a binding's ``bound`` and ``kwargs``, fallbacks);
    a ``RunnableLambda`` is opaque. The cost cap's first estimate of an item
    uses it: the chain's own limit, not a default.
    """
    found = [_own_max_tokens(runnable), *map(largest_max_tokens, _children(runnable))]
    values = [v for v in found if v]
    return max(values) if values else None


def _own_max_tokens(runnable: Runnable[Any, Any]) -> int | None:
    """The ``max_tokens`` a binding's kwargs or a chat model's field sets, itself."""
    value = None
    if isinstance(runnable, RunnableBinding):
        value = runnable.kwargs.get("max_tokens")
    elif isinstance(runnable, BaseChatModel):
        value = getattr(runnable, "max_tokens", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def _children(runnable: Runnable[Any, Any]) -> list[Runnable[Any, Any]]:
    """The runnables directly inside ``runnable``, in LCEL's public structure."""
    if isinstance(runnable, RunnableBinding):
        return [runnable.bound]
    if isinstance(runnable, RunnableWithFallbacks):
        return [runnable.runnable, *runnable.fallbacks]
    if isinstance(runnable, RunnableSequence):
        return list(runnable.steps)
    if isinstance(runnable, RunnableParallel):
        return list(runnable.steps__.values())
    return []


def map_chat_models(
    runnable: Runnable[Any, Any], wrap: Callable[[Runnable[Any, Any]], Runnable[Any, Any]]
) -> tuple[Runnable[Any, Any], int]:
    """Return a copy of ``runnable`` with each chat model in it replaced by ``wrap(model)``.

    Walks sequences, parallels, bindings and fallbacks (a chat model with
    fallbacks is wrapped as one); a ``RunnableLambda`` is opaque. Returns the
    copy and how many models were wrapped; the original is left as it was.
    """
    if isinstance(runnable, BaseChatModel) or (
        isinstance(runnable, RunnableWithFallbacks) and isinstance(runnable.runnable, BaseChatModel)
    ):
        return wrap(runnable), 1
    if isinstance(runnable, RunnableBinding):
        bound, n = map_chat_models(runnable.bound, wrap)
        return runnable.model_copy(update={"bound": bound}), n
    if isinstance(runnable, RunnableSequence):
        steps = [map_chat_models(step, wrap) for step in runnable.steps]
        new = [s for s, _ in steps]
        update = {"first": new[0], "middle": new[1:-1], "last": new[-1]}
        return runnable.model_copy(update=update), sum(n for _, n in steps)
    if isinstance(runnable, RunnableParallel):
        mapped = {k: map_chat_models(v, wrap) for k, v in runnable.steps__.items()}
        update = {"steps__": {k: s for k, (s, _) in mapped.items()}}
        return runnable.model_copy(update=update), sum(n for _, n in mapped.values())
    return runnable, 0
