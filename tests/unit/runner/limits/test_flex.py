"""The flex tier: a refused flex call is retried with backoff, then sent standard past its wait.

On a controlled clock: the sleeps move it, so no test waits and none asserts timing.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser

from lc_async_pipelines import build_story_chain
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import (
    FlexOptions,
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    run_items,
    with_budget,
)
from lc_async_pipelines.runner.limits.flex import in_flex_request, is_flex_unavailable
from tests.unit.fakes import FnChatModel

_REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def _status(status: int, code: str | None, headers: dict[str, str] | None = None) -> Exception:
    response = httpx.Response(status, headers=headers or {}, request=_REQUEST)
    body = {"message": "refused", "type": "x", "code": code}
    if status == 429:
        return openai.RateLimitError("refused", response=response, body=body)
    return openai.BadRequestError("refused", response=response, body=body)


class Clock:
    """A monotonic clock that only the test's sleeps move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Provider:
    """Refuses the first ``refusals`` flex requests (429 resource unavailable), answers the rest.

    Each reply says its tier, as OpenAI's ``service_tier`` does.
    """

    def __init__(self, refusals: int = 10**9, error: Exception | None = None) -> None:
        self.refusals = refusals
        self.error = error or _status(429, "resource_unavailable")
        self.sent: list[dict] = []

    async def __call__(self, messages, **kwargs) -> AIMessage:
        self.sent.append(kwargs)
        tier = kwargs.get("service_tier") or "default"
        if tier == "flex" and self.refusals > 0:
            self.refusals -= 1
            raise self.error
        return AIMessage(content="A story.", response_metadata={"service_tier": tier})


def _options(clock: Clock, wait_s: float) -> FlexOptions:
    return FlexOptions(
        wait_s=wait_s, timeout_s=900, initial=1.0, max_wait=8.0, jitter=0.0,
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip


async def _run(provider: Provider, flex: FlexOptions, budget: RateBudget | None = None):
    budget = budget or RateBudget()
    llm = with_budget(FnChatModel(fn=provider), budget, retry=RetryPolicy(max_retries=2), flex=flex)
    chain = build_story_chain(llm)
    options = RunOptions(retry=RetryPolicy(max_retries=2, initial=0.001, jitter=0.001))
    return [r async for r in run_items(chain, [Item("a", 1, "a fox")], options)], budget


async def test_refused_flex_is_retried_with_backoff_then_sent_standard_after_flex_wait():
    clock = Clock()
    provider = Provider()
    [record], budget = await _run(provider, _options(clock, wait_s=10))
    tiers = [kw.get("service_tier") for kw in provider.sent]
    # backoff 1, 2, 4 (7 s); the next, 8 s, would end past 10 s: standard at once
    assert tiers == ["flex", "flex", "flex", "flex", None]
    assert clock.slept == [1.0, 2.0, 4.0]
    assert all(kw["timeout"] == 900 for kw in provider.sent[:4])
    assert "timeout" not in provider.sent[-1]
    assert record.ok and record.service_tier == "default"
    assert [e["status"] for e in record.history] == [429] * 4
    assert budget.rate_limited == 0  # flex capacity is not the account's limit: no pause


async def test_an_items_later_calls_past_its_flex_wait_go_standard_without_a_flex_try():
    clock = Clock()
    provider = Provider()

    async def slow_standard(messages, **kwargs):
        reply = await provider(messages, **kwargs)
        clock.now += 5  # the standard answer takes 5 s: the item is past its flex wait
        return reply

    llm = with_budget(FnChatModel(fn=slow_standard), RateBudget(), flex=_options(clock, wait_s=10))
    chain = llm | StrOutputParser() | llm  # two calls, one after the other
    options = RunOptions(retry=RetryPolicy(max_retries=0))
    [record] = [r async for r in run_items(chain, [Item("a", 1, "a fox")], options)]
    assert [kw.get("service_tier") for kw in provider.sent] == ["flex"] * 4 + [None, None]
    assert record.ok and record.calls == 2 and record.service_tier == "default"


async def test_flex_answers_after_refusals_within_its_wait():
    clock = Clock()
    provider = Provider(refusals=2)
    [record], _ = await _run(provider, _options(clock, wait_s=60))
    assert [kw.get("service_tier") for kw in provider.sent] == ["flex"] * 3
    assert record.ok and record.service_tier == "flex"


async def test_flex_wait_zero_tries_flex_once_then_standard():
    clock = Clock()
    provider = Provider()
    [record], _ = await _run(provider, _options(clock, wait_s=0))
    assert [kw.get("service_tier") for kw in provider.sent] == ["flex", None]
    assert clock.slept == []
    assert record.service_tier == "default"


async def test_a_flex_timeout_counts_as_a_refusal():
    clock = Clock()
    provider = Provider(refusals=1, error=openai.APITimeoutError(request=_REQUEST))
    [record], _ = await _run(provider, _options(clock, wait_s=60))
    assert [kw.get("service_tier") for kw in provider.sent] == ["flex", "flex"]
    assert record.service_tier == "flex"


async def test_a_flex_400_is_not_sent_standard():
    clock = Clock()
    provider = Provider(error=_status(400, "invalid_request_error"))
    [record], _ = await _run(provider, _options(clock, wait_s=60))
    assert not record.ok and record.error["type"] == "BadRequestError"
    assert all(kw.get("service_tier") == "flex" for kw in provider.sent)


async def test_a_paced_budget_adds_no_backoff_of_its_own():
    clock = Clock()
    provider = Provider(refusals=3)
    budget = RateBudget(rpm=6_000_000)  # paces: the retry takes its turn, no second backoff
    [record], _ = await _run(provider, _options(clock, wait_s=60), budget)
    assert clock.slept == [0.0, 0.0, 0.0]
    assert record.service_tier == "flex"


def test_only_a_429_inside_a_flex_request_is_flex_capacity():
    exc = _status(429, "resource_unavailable")
    assert not in_flex_request()
    assert not is_flex_unavailable(exc)  # outside a flex request: a rate limit


@pytest.mark.parametrize("bad", [{"wait_s": -1}, {"timeout_s": 0}, {"initial": float("nan")}])
def test_bad_flex_options_are_refused(bad):
    with pytest.raises(ConfigurationError):
        FlexOptions(**bad)


async def test_with_flex_none_is_the_same_model_at_the_standard_tier_on_the_same_budget():
    clock = Clock()
    provider = Provider()
    budget = RateBudget()
    flex = with_budget(FnChatModel(fn=provider), budget, flex=_options(clock, wait_s=60))
    standard = flex.with_flex(None)
    assert standard.flex is None and flex.flex is not None and standard.budget is budget
    reply = await standard.ainvoke("a fox")
    assert reply.response_metadata["service_tier"] == "default"
    assert [kw.get("service_tier") for kw in provider.sent] == [None]
    assert budget.requests_sent == 1
