"""The analysis of one article: a :class:`NewsAnalysis`, by structured output."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from langchain_core.runnables import Runnable, RunnableSequence
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._text import SENTENCE_END
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.prompt_chain import structured_output
from lc_async_pipelines.prompts.news import NEWS_ANALYSIS_PROMPT

Tone = Literal["negative", "neutral", "positive"]

# The summary may run this far past the asked length before it is cut.
_OVER = 1.3
# Caps on every string and list: under constrained decoding (llama-server's
# grammar) the JSON then always closes within JSON_MAX_TOKENS, so a model that
# loops inside a string (SmolLM2-135M does) still returns a parsable answer.
_SUMMARY_CHARS = 1_500
_TOPIC_CHARS = 40
_FACT_CHARS = 200
_NAME_CHARS = 60
_NAMES_MAX = 6
JSON_MAX_TOKENS = 1_100
"""``max_tokens`` of one analysis: the longest JSON the schema allows, at 3 characters a token."""

_Name = Annotated[str, StringConstraints(max_length=_NAME_CHARS)]
_Fact = Annotated[str, StringConstraints(max_length=_FACT_CHARS)]


def _clean_list(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        text = " ".join(str(value).split())
        if text and text.casefold() not in seen:
            seen[text.casefold()] = text
    return list(seen.values())


class NewsAnalysis(BaseModel):
    """One article's analysis, as the model fills it under JSON-schema constrained decoding.

    The JSON Schema (``NewsAnalysis.model_json_schema()``) is what the model is
    constrained to: OpenAI's structured outputs, or llama-server's grammar
    from ``response_format``. ``extra="forbid"`` makes it ``additionalProperties:
    false``, which OpenAI's strict mode requires.

    Attributes:
        summary: the article in about the asked number of words (cut at a
            sentence end past 1.3 times it).
        topic: the main topic, one to three words.
        tone: ``"negative"``, ``"neutral"`` or ``"positive"``.
        key_facts: exactly three short facts.
        people, organizations, places: names found in the article (at most 6
            each; repeats dropped).

    Every string and list has a maximum length (summary 1,500 characters, topic
    40, a fact 200, a name 60; 6 names a list), so the longest answer the schema
    allows fits ``JSON_MAX_TOKENS``.
    """

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(max_length=_SUMMARY_CHARS, description="A summary of the article.")
    topic: str = Field(max_length=_TOPIC_CHARS, description="The main topic, one to three words.")
    tone: Tone = Field(description="The article's tone.")
    key_facts: list[_Fact] = Field(
        min_length=3, max_length=3, description="Three key facts, one short sentence each."
    )
    people: list[_Name] = Field(max_length=_NAMES_MAX, description="People named.")
    organizations: list[_Name] = Field(max_length=_NAMES_MAX, description="Organizations named.")
    places: list[_Name] = Field(max_length=_NAMES_MAX, description="Places named.")

    @field_validator("summary", "topic")
    @classmethod
    def _one_line(cls, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise ValueError("is empty")
        return text

    @field_validator("key_facts")
    @classmethod
    def _facts(cls, values: list[str]) -> list[str]:
        # spaces tidied, none dropped: exactly three stay three (a record re-validates)
        return [" ".join(str(v).split()) for v in values]

    @field_validator("people", "organizations", "places")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        return _clean_list(values)


def cut_to_words(text: str, max_words: int) -> str:
    """Return ``text`` cut at its last sentence end within ``1.3 * max_words`` words.

    Text within that length is returned as it is; with no sentence end in
    range, it is cut at the word limit.
    """
    limit = int(max_words * _OVER)
    words = list(re.finditer(r"\S+", text))
    if len(words) <= limit:
        return text
    head = text[: words[limit - 1].end()]
    ends = [m.end() for m in SENTENCE_END.finditer(head)]
    return head[: ends[-1]] if ends else head


def article_text(value: str | dict[str, Any]) -> str:
    """Return what the prompt shows of an article: its text, or ``title`` and ``text`` of a row.

    Raises:
        ConfigurationError: a row without a non-empty ``text`` field.
    """
    if isinstance(value, str):
        return value
    text = value.get("text")
    if not isinstance(text, str) or not text.strip():
        msg = f"an article row needs a non-empty 'text' field; it has: {', '.join(value)}"
        raise ConfigurationError(msg)
    title = value.get("title")
    return f"{title}\n\n{text}" if isinstance(title, str) and title.strip() else text


def build_news_analysis_chain(
    llm: ChatModel, *, max_words: int = 40
) -> Runnable[str, NewsAnalysis]:
    """Build the news-analysis chain: article text in, :class:`NewsAnalysis` out.

    ``NEWS_ANALYSIS_PROMPT | llm.with_structured_output(NewsAnalysis,
    method="json_schema")``, each output validated by Pydantic
    (:func:`~lc_async_pipelines.prompt_chain.structured_output`); an output
    that fails raises :class:`~lc_async_pipelines.errors.OutputValidationError`,
    which the runner retries and then records as the article's error. The
    summary is then cut to at most 1.3 times ``max_words`` words.

    Args:
        llm: the chat model (injected, never built here).
        max_words: the summary's length in words (the model is asked for it;
            the schema caps the summary at 1,500 characters).

    Returns:
        ``Runnable[str, NewsAnalysis]``: the article's text (a title line first,
        if any) in; the analysis out.

    Raises:
        ConfigurationError: ``max_words`` is not a whole number from 5 to 2,000.
    """
    if isinstance(max_words, bool) or not isinstance(max_words, int) or not 5 <= max_words <= 2000:
        msg = f"max_words must be a whole number from 5 to 2000, got {max_words!r}"
        raise ConfigurationError(msg)
    to_vars: Runnable[str, dict[str, Any]] = inline(
        lambda text: {"article": text, "max_words": max_words}, name="news_inputs"
    )

    def finish(analysis: NewsAnalysis) -> NewsAnalysis:
        return analysis.model_copy(update={"summary": cut_to_words(analysis.summary, max_words)})

    chain: RunnableSequence[str, NewsAnalysis] = RunnableSequence(
        to_vars,
        NEWS_ANALYSIS_PROMPT,
        structured_output(llm, NewsAnalysis, max_tokens=JSON_MAX_TOKENS),
        inline(finish, name="finish_analysis"),
        name="news_analysis",
    )
    return chain.with_types(input_type=str, output_type=NewsAnalysis)
