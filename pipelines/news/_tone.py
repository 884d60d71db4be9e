"""An article's tone, decided by a call of its own on the whole article.

Asked inside the analysis' JSON, after the summary and beside six other
fields, the tone is one field among seven and the model fills it in passing
(issue 23: SmolLM2-135M said "positive" for 10 of 10 articles). Here the
model reads the article once more with one question, after three made-up
examples, in one of two ways:

- **Calibrated log-probabilities**, when the endpoint returns them (OpenAI
  chat completions ``logprobs``/``top_logprobs``; llama-server too). The
  answer's first token is the tone (``NEWS_TONE_WORD_PROMPT``, bare-word
  answers, ``max_tokens=1``); the probabilities of the three tones among its
  top 20 alternatives, read from LangChain's ``response_metadata["logprobs"]``,
  are divided by those the same prompt gives to content-free inputs (``"N/A"``,
  ``""``, ``"[MASK]"``, averaged; asked once per step) and the largest wins:
  contextual calibration (Zhao et al. 2021, "Calibrate Before Use: Improving
  Few-Shot Performance of Language Models", ICML, arXiv:2102.09690). The
  prompt's bias towards one answer, whatever the article, is divided out;
  the division is bounded (:data:`MAX_CORRECTION`) so that an answer the
  model gives with more than 4 times the probability of each other tone is
  kept, as a capable model's confident answers should be.
- **A constrained choice** otherwise (a reply without log-probabilities, an
  endpoint that refuses them, a model other than ``ChatOpenAI``): the answer
  is constrained to the three tones (``NEWS_TONE_PROMPT``, a JSON Schema
  ``enum``: llama-server's grammar from ``response_format``, OpenAI's
  structured outputs).

Measured on the embedded model, SmolLM2-135M (``benchmarks/tone.py``, 50
articles of the shared news data, reference tones read from their human
summaries by VADER; 2026-12-06, commit f8f6ac5; docs/news.md has the table):
the calibrated log-probabilities answer 40 negative, 10 positive, agreeing
with the references on 23 (46%) against 26 (52%) for "positive" always; the
constrained choice answers "negative" for all 50 (21, 42%). The 135M model hardly
tells tones apart; calibration spreads its answers, it cannot add what the
model does not see.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableLambda,
    RunnableSequence,
    RunnableWithFallbacks,
)
from pydantic import BaseModel, ConfigDict, Field

from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.prompt_chain import structured_output
from lc_async_pipelines.prompts.news import NEWS_TONE_PROMPT, NEWS_TONE_WORD_PROMPT

__all__ = [
    "CONTENT_FREE",
    "MAX_CORRECTION",
    "TONES",
    "Tone",
    "ToneChoice",
    "build_tone_step",
    "calibrated_tone",
    "tone_probabilities",
]

Tone = Literal["negative", "neutral", "positive"]
TONES: tuple[Tone, ...] = ("negative", "neutral", "positive")
CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
"""The content-free inputs of contextual calibration (Zhao et al. 2021, section 5)."""
MAX_CORRECTION = 4
"""How many times one tone's calibration may outweigh another's (:func:`calibrated_tone`)."""
# {"tone": "negative"} is 7 tokens, but llama-server's JSON grammar lets
# whitespace in between and SmolLM2 spent up to 18 tokens on one answer
_TONE_MAX_TOKENS = 48
# OpenAI's largest top_logprobs; a tone outside the top 20 is rare and gets
# the 20th's probability, an upper bound on its own
_TOP_LOGPROBS = 20
# "neg", "Neutral", " positive": a token is a tone's when it starts it, from 3 letters on
_PREFIX_MIN = 3


class ToneChoice(BaseModel):
    """The tone call's answer: one of :data:`TONES`."""

    model_config = ConfigDict(extra="forbid")

    tone: Tone = Field(description="The article's tone.")


def _tone_of(choice: ToneChoice) -> Tone:
    return choice.tone


def tone_probabilities(message: BaseMessage) -> dict[Tone, float] | None:
    """Read the three tones' probabilities from a one-token reply's log-probabilities.

    Args:
        message: a reply asked with ``logprobs=True, top_logprobs=N``; its
            ``response_metadata["logprobs"]["content"][0]["top_logprobs"]`` is
            OpenAI's list of ``{"token", "logprob"}`` (langchain-openai puts
            the choice's ``logprobs`` there; llama-server answers the same).

    Returns:
        ``{tone: probability}`` for the three tones, normalized to sum to 1; a
        token counts for a tone when, stripped and lower-cased, it is the
        tone's start of 3 letters or more (``"Negative"``, ``" neg"``); a tone
        not among the alternatives gets the smallest listed probability.
        None when the reply has no log-probabilities or no tone among them.
    """
    logprobs = message.response_metadata.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, Sequence) or not content or not isinstance(content[0], Mapping):
        return None
    top = content[0].get("top_logprobs")
    if not isinstance(top, Sequence):
        return None
    seen: dict[Tone, float] = {}
    listed: list[float] = []
    for entry in top:
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            continue
        listed.append(math.exp(logprob))
        word = token.strip().lower()
        for tone in TONES:
            if len(word) >= _PREFIX_MIN and tone.startswith(word):
                seen[tone] = seen.get(tone, 0.0) + listed[-1]
    if not seen:
        return None
    floor = min(listed)
    probabilities = {tone: seen.get(tone, floor) for tone in TONES}
    total = sum(probabilities.values())
    return {tone: p / total for tone, p in probabilities.items()}


def calibrated_tone(probabilities: Mapping[Tone, float], prior: Mapping[Tone, float]) -> Tone:
    """Return the tone whose probability is largest once divided by its content-free prior.

    Contextual calibration (Zhao et al. 2021): ``argmax_t p(t | article) / p(t | content-free)``,
    the diagonal ``W = diag(p_cf)^-1`` of the paper with ``b = 0``. The prior
    is first raised to at least a quarter of its largest tone
    (``MAX_CORRECTION``), so a tone the model gives more than 4 times the
    probability of each other tone is kept: a capable model's prior for
    ``"N/A"`` can be nearly all "neutral", and dividing by it unbounded would
    turn a confident "neutral" (0.9 against 0.1) into the other tone. Ties go
    to the first of :data:`TONES`.
    """
    floor = max(prior.values()) / MAX_CORRECTION
    return max(TONES, key=lambda tone: probabilities[tone] / max(prior[tone], floor, 1e-12))


def _asks_logprobs(llm: ChatModel) -> bool:
    """Whether ``llm`` is a ``ChatOpenAI`` (wrapped or not): the client that takes ``logprobs``."""
    from langchain_openai import ChatOpenAI  # a dependency; heavy to import

    model: Any = llm
    while isinstance(model, RunnableBinding | RunnableWithFallbacks):
        model = model.bound if isinstance(model, RunnableBinding) else model.runnable
    return isinstance(model, ChatOpenAI)


class _CalibratedTone:
    """The log-probability path with its content-free prior, asked once and kept."""

    def __init__(self, llm: ChatModel) -> None:
        self._ask = NEWS_TONE_WORD_PROMPT | llm.bind(
            logprobs=True, top_logprobs=_TOP_LOGPROBS, max_tokens=1
        )
        self._prior: dict[Tone, float] | None = None
        self._lock = asyncio.Lock()
        # False once a reply came without log-probabilities: the endpoint gives none
        self.usable = True

    async def _probabilities(
        self, article: str, config: RunnableConfig
    ) -> dict[Tone, float] | None:
        import openai  # a dependency; imported here to keep this module's import light

        try:
            reply = await self._ask.ainvoke({"article": article}, config)
        except openai.BadRequestError:
            # a model that refuses logprobs (OpenAI's reasoning models): the choice answers
            self.usable = False
            return None
        probabilities = tone_probabilities(reply)
        if probabilities is None:
            self.usable = False
        return probabilities

    async def _prior_of(self, config: RunnableConfig) -> dict[Tone, float] | None:
        async with self._lock:
            if self._prior is not None or not self.usable:
                return self._prior
            answers = []
            for text in CONTENT_FREE:
                answer = await self._probabilities(text, config)
                if answer is None:
                    return None
                answers.append(answer)
            self._prior = {tone: sum(a[tone] for a in answers) / len(answers) for tone in TONES}
            return self._prior

    async def __call__(self, article: str, config: RunnableConfig) -> Tone | None:
        """The calibrated tone, or None when the endpoint gives no log-probabilities."""
        if not self.usable:
            return None
        prior = await self._prior_of(config)
        probabilities = await self._probabilities(article, config) if prior else None
        if prior is None or probabilities is None:
            return None
        return calibrated_tone(probabilities, prior)


def _choice_step(llm: ChatModel) -> Runnable[str, Tone]:
    to_vars: Runnable[str, dict[str, Any]] = inline(
        lambda text: {"article": text}, name="tone_inputs"
    )
    choose = structured_output(llm, ToneChoice, max_tokens=_TONE_MAX_TOKENS)
    return RunnableSequence(
        to_vars, NEWS_TONE_PROMPT, choose, inline(_tone_of, name="tone_of"), name="tone_choice"
    )


def build_tone_step(llm: ChatModel, *, logprobs: bool | None = None) -> Runnable[str, Tone]:
    """Build the tone step: article text in, ``"negative"``, ``"neutral"`` or ``"positive"`` out.

    Calibrated log-probabilities when the model returns them, else a
    constrained choice (see the module's docstring). The content-free prior
    costs three one-token calls, made once, inside the first article's call.

    Args:
        llm: the chat model (injected).
        logprobs: ask for log-probabilities (True), never (False), or only of
            a ``langchain_openai.ChatOpenAI``, bound or with fallbacks (None):
            other clients may send the unknown ``logprobs`` argument on to
            their API, which refuses it.

    Returns:
        ``Runnable[str, Tone]``.

    Raises:
        OutputValidationError: on invocation, the constrained choice's answer
            is not one of the tones (a model without constrained decoding).
    """
    choice = _choice_step(llm)
    asks = _asks_logprobs(llm) if logprobs is None else logprobs
    calibrated = _CalibratedTone(llm) if asks else None

    async def tone(article: str, config: RunnableConfig) -> Tone:
        if calibrated is not None:
            answer = await calibrated(article, config)
            if answer is not None:
                return answer
        chosen: Tone = await choice.ainvoke(article, config)
        return chosen

    return RunnableLambda(tone, name="news_tone")
