"""An article's tone, decided by a call of its own on the whole article: a constrained choice.

Asked inside the analysis' JSON, after the summary and beside six other
fields, the tone is one field among seven and the model fills it in passing
(issue 23: SmolLM2-135M said "positive" for 10 of 10 articles). Here the
model reads the article once more with one question, after three made-up
examples (``NEWS_TONE_PROMPT``), and its answer is constrained to the three
tones (a JSON Schema ``enum``: llama-server's grammar from
``response_format``, OpenAI's structured outputs).

The 135M model does not tell tones apart this way either: on the first 20
articles of the shared news data it answered "negative" for all 20, with or
without the examples (2026-12-06). Its log-probabilities of the three tones,
calibrated against a content-free input ("N/A"), spread the answers (9
negative, 9 positive, 2 neutral) but agreed with tones read from the human
summaries less often than "negative" for all (6 of 15 against 8 of 15), so
they are not used. A larger model answers the same question.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableSequence
from pydantic import BaseModel, ConfigDict, Field

from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.prompt_chain import structured_output
from lc_async_pipelines.prompts.news import NEWS_TONE_PROMPT

__all__ = ["TONES", "Tone", "ToneChoice", "build_tone_step"]

Tone = Literal["negative", "neutral", "positive"]
TONES: tuple[Tone, ...] = ("negative", "neutral", "positive")
# {"tone": "negative"} is 7 tokens, but llama-server's JSON grammar lets
# whitespace in between and SmolLM2 spent up to 18 tokens on one answer
_TONE_MAX_TOKENS = 48


class ToneChoice(BaseModel):
    """The tone call's answer: one of :data:`TONES`."""

    model_config = ConfigDict(extra="forbid")

    tone: Tone = Field(description="The article's tone.")


def _tone_of(choice: ToneChoice) -> Tone:
    return choice.tone


def build_tone_step(llm: ChatModel) -> Runnable[str, Tone]:
    """Build the tone step: article text in, ``"negative"``, ``"neutral"`` or ``"positive"`` out.

    Args:
        llm: the chat model (injected).

    Returns:
        ``Runnable[str, Tone]``.

    Raises:
        OutputValidationError: on invocation, the answer is not one of the tones
            (a model without constrained decoding).
    """
    to_vars: Runnable[str, dict[str, Any]] = inline(
        lambda text: {"article": text}, name="tone_inputs"
    )
    choose = structured_output(llm, ToneChoice, max_tokens=_TONE_MAX_TOKENS)
    chain: RunnableSequence[str, Tone] = RunnableSequence(
        to_vars,
        NEWS_TONE_PROMPT,
        choose,
        inline(_tone_of, name="tone_of"),
        name="news_tone",
    )
    # the output type is read from _tone_of's annotation: the Literal
    return chain.with_types(input_type=str)
