"""Engines that run a pipeline over many items beyond one process: Ray (``--engine ray``).

:func:`run_items_on_ray` (:mod:`lc_async_pipelines.engines.ray`) spreads a
run over Ray actors; each builds the chain of a :class:`ChainRecipe` in its
own model session. Engines sit above the runner, the model session and the
pipeline registry, which they use.

Names are imported on first use (PEP 562): importing this package loads
neither Ray nor the model session.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lc_async_pipelines.engines.ray import ChainRecipe, run_items_on_ray

_WHERE = {
    "ChainRecipe": "recipe",
    "run_items_on_ray": "ray",
}

__all__ = ["ChainRecipe", "run_items_on_ray"]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'lc_async_pipelines.engines' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"lc_async_pipelines.engines.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
