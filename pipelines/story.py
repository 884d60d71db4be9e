"""Story pipeline: topic → story, or topic → outline → story."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnablePassthrough, RunnableSequence

from lc_async_pipelines._finish import finish_reply
from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._text import max_tokens_for_words
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
        ``Runnable[str, str]`` (input and output schemas: strings): topic in,
        story text out, streamed by ``astream`` as the model writes it; stripped,
        and ending on a whole sentence when the model ran out of tokens (the
        rule: :mod:`lc_async_pipelines._finish`).
    """
    max_tokens = max_tokens_for_words(max_words)
    to_vars: Runnable[str, dict[str, Any]] = inline(
        lambda topic: {"topic": topic, "max_words": max_words}, name="story_inputs"
    )
    if not outline:
        steps: list[Runnable[Any, Any]] = [to_vars, STORY_PROMPT]
    else:
        outline_tokens = max_tokens_for_words(_OUTLINE_WORDS)
        outline_chain: Runnable[dict[str, Any], str] = (
            OUTLINE_PROMPT | llm.bind(max_tokens=outline_tokens) | finish_reply(outline_tokens)
        )
        steps = [
            to_vars,
            RunnablePassthrough.assign(outline=outline_chain),
            STORY_FROM_OUTLINE_PROMPT,
        ]
    chain: RunnableSequence[str, str] = RunnableSequence(
        *steps, llm.bind(max_tokens=max_tokens), finish_reply(max_tokens), name="story"
    )
    return chain.with_types(input_type=str, output_type=str)
