"""The analysis of one article: a :class:`NewsAnalysis`, by structured output."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableParallel,
    RunnableSequence,
)
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._text import SENTENCE_END, WORD
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError, OutputValidationError
from lc_async_pipelines.news._tone import Tone, build_tone_step
from lc_async_pipelines.prompt_chain import structured_output
from lc_async_pipelines.prompts.news import NEWS_ANALYSIS_PROMPT, NEWS_SHORT_SUMMARY

# The summary may run this far past the asked length before it is cut.
_OVER = 1.3
SUMMARY_MIN_WORDS = 10
"""The fewest words a summary may have; shorter replies are asked again."""
# The schema's minLength, which constrained decoding enforces: ten words of
# English run to about 60 characters; 45 lets ten short ones through.
_SUMMARY_MIN_CHARS = 45
SUMMARY_ASKS = 3
"""Asks for the analysis at most, while its summary is under ``SUMMARY_MIN_WORDS`` words."""
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


def word_count(text: str) -> int:
    """Return the number of words (runs of non-space characters) in ``text``."""
    return len(WORD.findall(text))


def _clean_list(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        text = " ".join(str(value).split())
        if text and text.casefold() not in seen:
            seen[text.casefold()] = text
    return list(seen.values())


class ArticleFacts(BaseModel):
    """What the analysis call fills: :class:`NewsAnalysis` but the tone, decided apart.

    Its summary is not checked for length here: the chain counts its words
    and asks again with the short reply shown (see
    :func:`build_news_analysis_chain`).
    """

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(
        max_length=_SUMMARY_CHARS,
        # in the schema only, so decoding enforces it; the words are counted apart
        json_schema_extra={"minLength": _SUMMARY_MIN_CHARS},
        description=f"A summary of the article, at least {SUMMARY_MIN_WORDS} words.",
    )
    topic: str = Field(max_length=_TOPIC_CHARS, description="The main topic, one to three words.")
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


class NewsAnalysis(ArticleFacts):
    """One article's analysis: a summary of at least ten words, topic, tone, key facts, names.

    Its JSON Schema (``NewsAnalysis.model_json_schema()``) is what a model is
    constrained to when it fills the whole analysis in one call (the news
    agent): OpenAI's structured outputs, or llama-server's grammar from
    ``response_format``. ``extra="forbid"`` makes it ``additionalProperties:
    false``, which OpenAI's strict mode requires. The analysis chain fills
    :class:`ArticleFacts` in one call and the tone in another.

    Attributes:
        summary: the article in about the asked number of words, at least 10
            (cut at a sentence end past 1.3 times the asked length).
        topic: the main topic, one to three words.
        tone: ``"negative"``, ``"neutral"`` or ``"positive"``.
        key_facts: exactly three short facts.
        people, organizations, places: names found in the article (at most 6
            each; repeats dropped).

    Every string and list has a maximum length (summary 1,500 characters, topic
    40, a fact 200, a name 60; 6 names a list), so the longest answer the schema
    allows fits ``JSON_MAX_TOKENS``; the summary has a minimum of 45 characters
    in the schema and of 10 words in validation.

    Raises:
        pydantic.ValidationError: on validation, a field out of its bounds,
            or a summary of fewer than 10 words.
    """

    tone: Tone = Field(description="The article's tone.")

    @field_validator("summary")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        words = word_count(value)
        if words < SUMMARY_MIN_WORDS:
            raise ValueError(f"has {words} words; at least {SUMMARY_MIN_WORDS} are needed")
        return value


def cut_to_words(text: str, max_words: int, *, min_words: int = 0) -> str:
    """Return ``text`` cut at its last sentence end within ``1.3 * max_words`` words.

    Text within that length is returned as it is; with no sentence end in
    range that leaves at least ``min_words`` words, it is cut at the word limit.
    """
    limit = int(max_words * _OVER)
    words = list(WORD.finditer(text))
    if len(words) <= limit:
        return text
    head = text[: words[limit - 1].end()]
    least = words[min_words - 1].end() if 0 < min_words <= limit else 0
    ends = [m.end() for m in SENTENCE_END.finditer(head) if m.end() >= least]
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


def _facts_step(llm: ChatModel, max_words: int) -> Runnable[str, ArticleFacts]:
    """The analysis call but the tone; a summary under 10 words is asked again, the reply shown."""
    structured = structured_output(llm, ArticleFacts, max_tokens=JSON_MAX_TOKENS)

    async def fill(article: str, config: RunnableConfig) -> ArticleFacts:
        asked = NEWS_ANALYSIS_PROMPT.format_messages(article=article, max_words=max_words)
        first = list(asked)
        for _ in range(SUMMARY_ASKS):
            facts: ArticleFacts = await structured.ainvoke(asked, config)
            words = word_count(facts.summary)
            if words >= SUMMARY_MIN_WORDS:
                return facts
            again = NEWS_SHORT_SUMMARY.format(
                summary=facts.summary, words=words, min_words=SUMMARY_MIN_WORDS
            )
            asked = [*first, AIMessage(facts.model_dump_json()), HumanMessage(again)]
        msg = (
            f"the summary has {words} words after {SUMMARY_ASKS} asks; "
            f"at least {SUMMARY_MIN_WORDS} are needed"
        )
        raise OutputValidationError(msg)

    return RunnableLambda(fill, name="news_facts")


def build_news_analysis_chain(
    llm: ChatModel, *, max_words: int = 40
) -> Runnable[str, NewsAnalysis]:
    """Build the news-analysis chain: article text in, :class:`NewsAnalysis` out.

    Two calls on the article, run concurrently:

    - the analysis but the tone: ``NEWS_ANALYSIS_PROMPT`` and
      ``llm.with_structured_output(ArticleFacts, method="json_schema")``,
      validated by Pydantic
      (:func:`~lc_async_pipelines.prompt_chain.structured_output`). Its schema
      asks for a summary of at least 45 characters, which constrained decoding
      enforces; a summary still under 10 words is asked for again (at most
      ``SUMMARY_ASKS`` asks in all) with the short reply shown to the model.
    - the tone, on the whole article
      (:func:`~lc_async_pipelines.news._tone.build_tone_step`): the three
      tones' log-probabilities, calibrated against content-free inputs, when
      the model returns them (a ``ChatOpenAI``: OpenAI, the embedded
      llama-server); else a constrained choice among the three tones.

    The summary is then cut to at most 1.3 times ``max_words`` words, never
    under 10. An output that does not fit raises
    :class:`~lc_async_pipelines.errors.OutputValidationError`, which the
    runner retries and then records as the article's error.

    Args:
        llm: the chat model (injected, never built here).
        max_words: the summary's length in words (the model is asked for it;
            the schema caps the summary at 1,500 characters).

    Returns:
        ``Runnable[str, NewsAnalysis]``: the article's text (a title line first,
        if any) in; the analysis out.

    Raises:
        ConfigurationError: ``max_words`` is not a whole number from 10 to 2,000.
        OutputValidationError: on invocation, an output that does not fit its
            schema, or a summary under 10 words after ``SUMMARY_ASKS`` asks.
    """
    if (
        isinstance(max_words, bool)
        or not isinstance(max_words, int)
        or not SUMMARY_MIN_WORDS <= max_words <= 2000
    ):
        msg = (
            f"max_words must be a whole number from {SUMMARY_MIN_WORDS} to 2000, got {max_words!r}"
        )
        raise ConfigurationError(msg)

    def finish(parts: dict[str, Any]) -> NewsAnalysis:
        facts: ArticleFacts = parts["facts"]
        summary = cut_to_words(facts.summary, max_words, min_words=SUMMARY_MIN_WORDS)
        return NewsAnalysis(**{**facts.model_dump(), "summary": summary, "tone": parts["tone"]})

    both = RunnableParallel(facts=_facts_step(llm, max_words), tone=build_tone_step(llm))
    chain: RunnableSequence[str, NewsAnalysis] = RunnableSequence(
        both, inline(finish, name="finish_analysis"), name="news_analysis"
    )
    return chain.with_types(input_type=str, output_type=NewsAnalysis)
