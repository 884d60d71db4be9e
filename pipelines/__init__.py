"""LangChain async workflow pipelines: story and summary LCEL chains, and their runner.

Every chain factory takes the chat model (injected, never built inside) and
returns a typed ``Runnable``::

    async with chat_model_session() as llm:
        chain = build_summary_chain(llm, max_words=60)
        summaries = await chain.abatch(docs, {"max_concurrency": 4})
"""

from lc_async_pipelines.models import ModelSettings, chat_model_session, make_chat_model
from lc_async_pipelines.story import build_story_chain
from lc_async_pipelines.summary import (
    build_auto_summary_chain,
    build_map_reduce_summary_chain,
    build_summary_chain,
    split_into_chunks,
)

__all__ = [
    "ModelSettings",
    "build_auto_summary_chain",
    "build_map_reduce_summary_chain",
    "build_story_chain",
    "build_summary_chain",
    "chat_model_session",
    "make_chat_model",
    "split_into_chunks",
]
