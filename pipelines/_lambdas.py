"""Cheap chain steps written as plain functions, run inline under ``ainvoke``.

LangChain runs a ``RunnableLambda`` that has only a sync function in a thread
pool on every ``ainvoke`` and ``astream`` (``RunnableLambda._ainvoke`` calls
``run_in_executor``): a hop to a thread and back for a step that builds a
dict. :func:`inline` gives the lambda an async twin that calls the function on
the event loop, so the step costs a function call (``benchmarks/overhead.py``
measured the hop at about 0.2 ms of CPU a call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from langchain_core.runnables import RunnableLambda

__all__ = ["inline"]

In = TypeVar("In")
Out = TypeVar("Out")


def inline(func: Callable[[In], Out], *, name: str) -> RunnableLambda[In, Out]:
    """Return ``RunnableLambda(func)`` whose async path calls ``func`` on the event loop.

    Args:
        func: a quick, non-blocking function of the step's input (no I/O).
        name: the step's run name.

    Returns:
        The lambda: ``invoke`` and ``ainvoke`` both return ``func(input)``.
    """

    async def afunc(value: In) -> Out:
        return func(value)

    return RunnableLambda(func, afunc=afunc, name=name)
