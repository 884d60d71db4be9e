"""Story pipeline: topic → story, or topic → outline → story."""

from __future__ import annotations

from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from lc_async_pipelines._text import finish_text, max_tokens_for_words
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.prompts.story import OUTLINE_PROMPT, STORY_FROM_OUTLINE_PROMPT, STORY_PROMPT

__all__ = ["build_story_chain"]

_OUTLINE_WORDS = 60


def build_story_chain(
    llm: ChatModel,
    *,
    max_words: int = 250,
    outline: bool = False,
) -> Runnable[str, str]:
    """Build the story chain.

    Args:
        llm: the chat model (any ``Runnable`` taking a prompt value and returning
            a message, e.g. ``ChatOpenAI`` or ``ChatOpenAI(...).with_retry()``).
        max_words: target story length in words; ``max_tokens`` is sized from it.
        outline: two model calls, topic → outline → story, instead of one.

    Returns:
        ``Runnable[str, str]``: topic in, story text out (stripped, ending on a
        whole sentence when the model ran out of tokens).
    """
    story_llm = llm.bind(max_tokens=max_tokens_for_words(max_words))
    finish = RunnableLambda(finish_text, name="finish_text")
    to_vars: Runnable[str, dict[str, Any]] = RunnableLambda(
        lambda topic: {"topic": topic, "max_words": max_words}, name="story_inputs"
    )
    chain: Runnable[str, str]
    if not outline:
        chain = to_vars | STORY_PROMPT | story_llm | StrOutputParser() | finish
    else:
        outline_chain: Runnable[dict[str, Any], str] = (
            OUTLINE_PROMPT
            | llm.bind(max_tokens=max_tokens_for_words(_OUTLINE_WORDS))
            | StrOutputParser()
            | finish
        )
        chain = (
            to_vars
            | RunnablePassthrough.assign(outline=outline_chain)
            | STORY_FROM_OUTLINE_PROMPT
            | story_llm
            | StrOutputParser()
            | finish
        )
    return chain.with_config(run_name="story")
