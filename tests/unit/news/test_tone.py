"""The tone step: calibrated log-probabilities, and the constrained choice when there are none."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI

from lc_async_pipelines.news._tone import (
    CONTENT_FREE,
    TONES,
    build_tone_step,
    calibrated_tone,
    tone_probabilities,
)
from lc_async_pipelines.prompts.news import NEWS_TONE_PROMPT, NEWS_TONE_WORD_PROMPT
from tests.unit.fakes import FnChatModel

QUESTION = NEWS_TONE_WORD_PROMPT.messages[-1].prompt.template.split("\n\n")[-1]


def with_logprobs(top: dict[str, float]) -> AIMessage:
    """A one-token reply as langchain-openai returns it asked with logprobs: ``{token: probability}``."""
    entries = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]
    first = max(entries, key=lambda e: e["logprob"])
    return AIMessage(
        content=first["token"],
        response_metadata={"logprobs": {"content": [{**first, "top_logprobs": entries}]}},
    )


def article_of(messages: list[Any]) -> str:
    return messages[-1].content.removesuffix(QUESTION).removesuffix("\n\n")


class ToneModel:
    """Answers the word prompt from ``word_replies[article]`` (or ``by_default``) and the
    constrained-choice prompt with ``choice``; every call is kept in ``calls``."""

    def __init__(self, word_replies: dict[str, AIMessage], by_default: AIMessage, choice: str):
        self.word_replies, self.by_default, self.choice = word_replies, by_default, choice
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, messages: list[Any], **kwargs: Any) -> AIMessage:
        # the word prompt's examples answer with a bare word, the choice's with JSON
        kind = "choice" if messages[2].content.startswith("{") else "word"
        article = article_of(messages)
        self.calls.append((kind, article, kwargs))
        if kind == "choice":
            return AIMessage(content=json.dumps({"tone": self.choice}))
        return self.word_replies.get(article, self.by_default)


# The prompt alone leans to "negative": what contextual calibration divides out.
PRIOR = {"negative": 0.7, "neutral": 0.2, "positive": 0.1}


def test_probabilities_are_read_summed_over_prefixes_and_normalized() -> None:
    reply = with_logprobs({"negative": 0.5, "Negative": 0.1, "neg": 0.1, "The": 0.2, "pos": 0.05})
    probabilities = tone_probabilities(reply)
    assert probabilities is not None
    # neutral is not listed: it gets the smallest listed probability (0.05)
    assert probabilities["negative"] == pytest.approx(0.7 / 0.8)
    assert probabilities["positive"] == pytest.approx(0.05 / 0.8)
    assert probabilities["neutral"] == pytest.approx(0.05 / 0.8)


@pytest.mark.parametrize(
    "metadata",
    [{}, {"logprobs": None}, {"logprobs": {"content": []}}, {"logprobs": {"content": [{}]}}],
)
def test_a_reply_without_logprobs_has_no_probabilities(metadata: dict[str, Any]) -> None:
    assert tone_probabilities(AIMessage(content="negative", response_metadata=metadata)) is None


def test_a_reply_whose_alternatives_hold_no_tone_has_no_probabilities() -> None:
    # "ne" starts negative and neutral: too short to count for either
    assert tone_probabilities(with_logprobs({"The": 0.6, "ne": 0.3, "A": 0.1})) is None


def test_calibration_divides_out_the_prior() -> None:
    article = {"negative": 0.6, "neutral": 0.1, "positive": 0.3}
    assert max(article, key=article.__getitem__) == "negative"
    # the prior's 0.1 raised to 0.7/4: 0.3/0.175 > 0.6/0.7 > 0.1/0.2
    assert calibrated_tone(article, PRIOR) == "positive"
    assert calibrated_tone(article, dict.fromkeys(TONES, 1 / 3)) == "negative"


def test_a_confident_answer_is_kept_whatever_the_prior() -> None:
    # a capable model: "N/A" is nearly all neutral, the article 85% neutral
    prior = {"negative": 0.01, "neutral": 0.98, "positive": 0.01}
    confident = {"negative": 0.1, "neutral": 0.85, "positive": 0.05}
    assert calibrated_tone(confident, prior) == "neutral"  # unbounded: 0.1/0.01 > 0.85/0.98
    unsure = {"negative": 0.3, "neutral": 0.65, "positive": 0.05}
    assert calibrated_tone(unsure, prior) == "negative"  # 0.3/0.245 > 0.65/0.98


async def test_articles_get_calibrated_tones_and_the_prior_is_asked_once() -> None:
    model = ToneModel(
        {
            "Good news.": with_logprobs({"negative": 0.55, "neutral": 0.1, "positive": 0.35}),
            "Bad news.": with_logprobs({"negative": 0.9, "neutral": 0.05, "positive": 0.05}),
            "Plain news.": with_logprobs({"negative": 0.5, "neutral": 0.4, "positive": 0.1}),
        },
        by_default=with_logprobs(PRIOR),
        choice="negative",
    )
    step = build_tone_step(FnChatModel(fn=model), logprobs=True)
    tones = await step.abatch(["Good news.", "Bad news.", "Plain news."])
    assert tones == ["positive", "negative", "neutral"]
    asked = [article for kind, article, _ in model.calls]
    assert sorted(asked[:3]) == sorted(CONTENT_FREE)  # the prior first, once
    assert sorted(asked[3:]) == ["Bad news.", "Good news.", "Plain news."]
    assert all(kind == "word" for kind, _, _ in model.calls)
    assert all(
        kw["logprobs"] is True and kw["top_logprobs"] == 20 and kw["max_tokens"] == 1
        for _, _, kw in model.calls
    )


async def test_without_logprobs_the_constrained_choice_answers_and_logprobs_are_not_asked_again() -> (
    None
):
    model = ToneModel({}, by_default=AIMessage(content="negative"), choice="neutral")
    step = build_tone_step(FnChatModel(fn=model), logprobs=True)
    assert await step.ainvoke("An article.") == "neutral"
    assert await step.ainvoke("Another article.") == "neutral"
    kinds = [kind for kind, _, _ in model.calls]
    # one word call (the first content-free input) found no logprobs; choices after that
    assert kinds == ["word", "choice", "choice"]


async def test_a_model_that_refuses_logprobs_gets_the_constrained_choice() -> None:
    calls: list[str] = []

    async def refuse(messages: list[Any], **kwargs: Any) -> AIMessage:
        if "logprobs" in kwargs:
            calls.append("refused")
            request = httpx.Request("POST", "http://api.test/v1/chat/completions")
            response = httpx.Response(400, request=request)
            raise openai.BadRequestError("logprobs not supported", response=response, body=None)
        calls.append("choice")
        return AIMessage(content=json.dumps({"tone": "positive"}))

    step = build_tone_step(FnChatModel(fn=refuse), logprobs=True)
    assert await step.ainvoke("An article.") == "positive"
    assert await step.ainvoke("Another.") == "positive"
    assert calls == ["refused", "choice", "choice"]


async def test_by_default_only_a_chat_openai_is_asked_for_logprobs() -> None:
    model = ToneModel({}, by_default=with_logprobs(PRIOR), choice="positive")
    step = build_tone_step(FnChatModel(fn=model))
    assert await step.ainvoke("An article.") == "positive"
    assert [kind for kind, _, _ in model.calls] == ["choice"]
    assert all("logprobs" not in kw for _, _, kw in model.calls)


def test_a_chat_openai_is_recognized_bound_or_with_fallbacks() -> None:
    from lc_async_pipelines.news._tone import _asks_logprobs

    llm = ChatOpenAI(model="m", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    other = FnChatModel(fn=ToneModel({}, by_default=AIMessage(content=""), choice="neutral"))
    assert _asks_logprobs(llm)
    assert _asks_logprobs(llm.bind(max_tokens=5))
    assert _asks_logprobs(llm.with_fallbacks([other]))
    assert not _asks_logprobs(other)


def test_the_two_tone_prompts_ask_the_same_question_of_the_same_examples() -> None:
    word = NEWS_TONE_WORD_PROMPT.format_messages(article="A.")
    chosen = NEWS_TONE_PROMPT.format_messages(article="A.")
    assert [m.type for m in word] == [m.type for m in chosen]
    for w, c in zip(word, chosen, strict=True):
        if w.type == "ai":
            assert json.loads(c.content) == {"tone": w.content}
        else:
            assert w.content == c.content
