"""Lengthen a summary the model ended too short: summarize what it left out, once.

A summary's ``max_words`` is a target N met within ±30%
(:mod:`lc_async_pipelines.summary`). An overlong reply is cut back to a
sentence end, but a reply the model ends on its own under ``ceil(0.7N)``
words cannot be cut to length: the embedded model often copies one long
sentence of a news article and stops, or ends a story's summary at 98 of
150 words (issue 23). :func:`lengthen` wraps a summary step so that such a
summary is followed by one more call: the same prompt, asked for M more
words (N minus the words written) of the document's sentences the summary
does not cover yet (a sentence half or more of whose word 3-grams are in the
summary is covered: :func:`~lc_async_pipelines._repeats.uncovered`). What
comes back is trimmed of a meta opening, its sentences repeating the summary
are left out, and the rest is added after the summary. It is finished to M
words (at most ``floor(1.3M)``), so the whole stays under ``floor(1.3N)``.

Asking the model to "go on" after its own reply was tried first: at
temperature 0 the embedded model wrote its summary again, word for word,
on 3 of 3 short news summaries.

Under ``astream`` the summary streams as before and what is added follows
in one piece once judged. The record notes ``{"lengthened": 1}`` (a
``NOTE_EVENT`` custom event) when the call is made. A summary that is empty,
ended within the range, or covers every sentence is passed on untouched at
no extra call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnablePassthrough,
)

from lc_async_pipelines._repeats import uncovered
from lc_async_pipelines._text import SENTENCE_END, word_range
from lc_async_pipelines.on_task import off_task_opening, trim_meta_opening
from lc_async_pipelines.runner.notes import NOTE_EVENT

__all__ = ["lengthen"]

# What makes the reply step for a continuation of M words (M in, prompt → text out).
ReplyFor = Callable[[int], Runnable[PromptValue, str]]


def lengthen(
    step: Runnable[dict[str, Any], str],
    prompt: Runnable[dict[str, Any], PromptValue],
    reply_for: ReplyFor,
    *,
    kind: str,
    max_words: int,
    document: str = "text",
    name: str = "lengthen",
) -> Runnable[dict[str, Any], str]:
    """Wrap a summary step: a summary ended under ``ceil(0.7N)`` words is continued once.

    Args:
        step: the summary step (the prompt's variables in, the summary out).
        prompt: the step's prompt, asked again of the sentences left out.
        reply_for: the model and finishing step for a reply of M words.
        kind: the document's kind, for judging the added text's opening.
        max_words: the asked length N, in words (the prompt's ``max_words``).
        document: the prompt variable holding the text summarized.
        name: the step's run name.

    Returns:
        ``Runnable[dict, str]``: the summary, followed when it was short by
        the continuation (the module's rule); streamed as ``step`` streams.

    Raises:
        ConfigurationError: ``max_words`` is below 1.
    """
    low, _ = word_range(max_words)
    first = RunnablePassthrough.assign(summary=step)

    async def go_on(
        chunks: AsyncIterator[dict[str, Any]], config: RunnableConfig
    ) -> AsyncIterator[str]:
        variables: dict[str, Any] = {}
        summary = ""
        async for chunk in chunks:
            for key, value in chunk.items():
                if key != "summary":
                    variables[key] = value
                elif value:
                    summary += value
                    yield value
        words = len(summary.split())
        if words == 0 or words >= low:
            if not summary:
                yield ""  # an empty summary is "", not None
            return
        rest = uncovered(variables.get(document, ""), summary)
        if not rest:
            return
        more = max_words - words
        again = await (prompt | reply_for(more)).ainvoke(
            {**variables, document: rest, "max_words": more}, config
        )
        await adispatch_custom_event(NOTE_EVENT, {"lengthened": 1}, config=config)
        if added := _new_part(summary, again, kind):
            yield added

    transform = cast("Callable[[AsyncIterator[dict[str, Any]]], AsyncIterator[str]]", go_on)
    wrapped: Runnable[dict[str, Any], str] = first | RunnableGenerator(transform, name=name)
    return wrapped


def _new_part(summary: str, added: str, kind: str) -> str:
    """What the second reply adds: meta opening trimmed, sentences repeating the summary left out.

    Returns the text to append, with the space (or paragraph break) before it; "" for none.
    """
    if off_task_opening(added, kind=kind):
        added = trim_meta_opening(added, kind=kind)
        if off_task_opening(added, kind=kind):
            return ""
    new = uncovered(added, summary)
    if not new:
        return ""
    # A summary ending mid-sentence ("...") is set apart as a paragraph.
    return (" " if _ends_sentence(summary) else "\n\n") + new


def _ends_sentence(text: str) -> bool:
    text = text.rstrip()
    return any(m.end() == len(text) for m in SENTENCE_END.finditer(text))
