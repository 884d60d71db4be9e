"""LangChain async workflow pipelines: LCEL chains, streaming handlers, and a runner for many items.

Every chain factory takes the chat model (injected, never built inside) and
returns a typed ``Runnable``; :func:`model_session` wires the model once, with
its budget, cache and fallback::

    async with model_session() as session:                # embedded model, or your endpoint
        chain = build_summary_chain(session.llm, max_words=60)
        summaries = await chain.abatch(docs, {"max_concurrency": 4})
        async for record in run_items(chain, read_items("docs.jsonl"), RunOptions(concurrency=8)):
            ...

Subpackages: :mod:`lc_async_pipelines.callbacks` (async handlers),
:mod:`lc_async_pipelines.prompts` (templates), :mod:`lc_async_pipelines.runner`,
:mod:`lc_async_pipelines.service` (needs the ``service`` extra).

Names are imported on first use (PEP 562), so ``import lc_async_pipelines``
and the command line start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lc_async_pipelines._version import __version__

if TYPE_CHECKING:
    from lc_async_pipelines.errors import (
        BudgetUnavailable,
        CacheUnavailable,
        ConfigurationError,
        DeadlineExceeded,
        EmbeddedModelError,
        FetchError,
        InputError,
        OutputValidationError,
        OutputWriteError,
        PipelinesError,
        RowError,
        WorkersLost,
    )
    from lc_async_pipelines.models import ModelSettings, chat_model_session, make_chat_model
    from lc_async_pipelines.prompt_chain import (
        build_prompt_chain,
        load_prompt_file,
        load_schema,
        structured_output,
    )
    from lc_async_pipelines.registry import PipelineSpec, load_pipeline, registered_pipelines
    from lc_async_pipelines.runner import (
        Item,
        RateBudget,
        Record,
        RetryPolicy,
        RunOptions,
        RunSummary,
        SQLiteCache,
        prepare_resume,
        read_items,
        run_items,
        with_budget,
        write_records,
    )
    from lc_async_pipelines.session import ModelSession, model_session
    from lc_async_pipelines.story import build_story_chain
    from lc_async_pipelines.summary import (
        build_auto_summary_chain,
        build_map_reduce_summary_chain,
        build_summary_chain,
        split_into_chunks,
    )

_WHERE = {
    "BudgetUnavailable": "errors",
    "CacheUnavailable": "errors",
    "FetchError": "errors",
    "WorkersLost": "errors",
    "ConfigurationError": "errors",
    "DeadlineExceeded": "errors",
    "EmbeddedModelError": "errors",
    "InputError": "errors",
    "OutputValidationError": "errors",
    "OutputWriteError": "errors",
    "PipelinesError": "errors",
    "RowError": "errors",
    "ModelSettings": "models",
    "chat_model_session": "models",
    "make_chat_model": "models",
    "build_prompt_chain": "prompt_chain",
    "load_prompt_file": "prompt_chain",
    "load_schema": "prompt_chain",
    "structured_output": "prompt_chain",
    "PipelineSpec": "registry",
    "load_pipeline": "registry",
    "registered_pipelines": "registry",
    "Item": "runner",
    "RateBudget": "runner",
    "Record": "runner",
    "RetryPolicy": "runner",
    "RunOptions": "runner",
    "RunSummary": "runner",
    "SQLiteCache": "runner",
    "prepare_resume": "runner",
    "read_items": "runner",
    "run_items": "runner",
    "with_budget": "runner",
    "write_records": "runner",
    "ModelSession": "session",
    "model_session": "session",
    "build_story_chain": "story",
    "build_auto_summary_chain": "summary",
    "build_map_reduce_summary_chain": "summary",
    "build_summary_chain": "summary",
    "split_into_chunks": "summary",
}

__all__ = [
    "BudgetUnavailable",
    "CacheUnavailable",
    "ConfigurationError",
    "DeadlineExceeded",
    "EmbeddedModelError",
    "FetchError",
    "InputError",
    "Item",
    "ModelSession",
    "ModelSettings",
    "OutputValidationError",
    "OutputWriteError",
    "PipelineSpec",
    "PipelinesError",
    "RateBudget",
    "Record",
    "RetryPolicy",
    "RowError",
    "RunOptions",
    "RunSummary",
    "SQLiteCache",
    "WorkersLost",
    "__version__",
    "build_auto_summary_chain",
    "build_map_reduce_summary_chain",
    "build_prompt_chain",
    "build_story_chain",
    "build_summary_chain",
    "chat_model_session",
    "load_pipeline",
    "load_prompt_file",
    "load_schema",
    "make_chat_model",
    "model_session",
    "prepare_resume",
    "read_items",
    "registered_pipelines",
    "run_items",
    "split_into_chunks",
    "structured_output",
    "with_budget",
    "write_records",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'lc_async_pipelines' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"lc_async_pipelines.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
