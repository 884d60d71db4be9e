"""The Anthropic adapter of the batch layer: conversion both ways, results, the batched model.

No network: the batched model is driven with a route of the test's own, and
the per-request fallback with a fake ChatAnthropic-free chat model.
"""

import json
import re

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.exceptions import (
    ModelAPIError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelRateLimitError,
)
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import RateBudget, RetryPolicy, is_transient, with_budget
from lc_async_pipelines.runner.batch import BatchOptions, BatchSession, LineResult, provider_for
from lc_async_pipelines.runner.batch._anthropic import (
    AnthropicBatches,
    _result,
)
from lc_async_pipelines.runner.batch._anthropic_format import error_for, to_chat_result, to_params
from lc_async_pipelines.runner.batch._files import custom_id
from lc_async_pipelines.runner.costs import CostMeter, ModelPrice, PriceTable

SETTINGS = {"model": "claude-x", "max_tokens": 50, "temperature": None, "top_p": 0.9}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "echo:"}, {"type": "text", "text": " hi"}],
    "stop_reason": "max_tokens",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 5,
    },
}


def chat_anthropic(**extra):
    return ChatAnthropic(
        model="claude-x",
        api_key="sk-ant-test-0123",
        base_url="http://127.0.0.1:9",
        max_tokens=50,
        **extra,
    )


# --- LangChain messages -> Messages API params -------------------------------------


def test_system_messages_become_system_and_turns_keep_their_roles():
    messages = [
        SystemMessage("be brief"),
        HumanMessage("first"),
        HumanMessage([{"type": "text", "text": "second"}, "third"]),
        AIMessage("an answer"),
        HumanMessage("again"),
    ]
    params = to_params(messages, SETTINGS)
    assert params == {
        "model": "claude-x",
        "max_tokens": 50,
        "top_p": 0.9,  # None values left out: the API's defaults
        "system": "be brief",
        "messages": [
            {"role": "user", "content": [  # two human messages in a row: one turn
                {"type": "text", "text": "first"},
                {"type": "text", "text": "second"},
                {"type": "text", "text": "third"},
            ]},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "again"},
        ],
    }  # fmt: skip
    two = to_params([SystemMessage("a"), SystemMessage("b"), HumanMessage("x")], SETTINGS)
    assert two["system"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    json.dumps(params)  # JSON values only: it goes into the state hash and the request


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        ([HumanMessage([{"type": "image_url", "image_url": {"url": "x"}}])], "'image_url'"),
        ([AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}])], "tool calls"),
        ([HumanMessage("q"), ToolMessage("r", tool_call_id="1")], "'tool' message"),
        ([SystemMessage("only a system message")], "user or assistant"),
    ],
)
def test_what_the_conversion_does_not_carry_is_refused_by_name(messages, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        to_params(messages, SETTINGS)


# --- a Message -> the LangChain reply ---------------------------------------------


def test_a_message_becomes_an_ai_message_with_usage_counting_cached_input():
    result = to_chat_result({**MESSAGE, "service_tier": "batch"})
    reply = result.generations[0].message
    assert reply.content == "echo: hi"
    assert reply.usage_metadata == {
        "input_tokens": 45,  # 10 uncached + 30 read + 5 written, as langchain-anthropic counts
        "output_tokens": 2,
        "total_tokens": 47,
        "input_token_details": {"cache_read": 30, "cache_creation": 5},
    }
    meta = reply.response_metadata
    assert meta["model_name"] == "claude-x" and meta["stop_reason"] == "max_tokens"
    assert meta["service_tier"] == "batch"


def test_failed_results_become_langchain_errors_the_retry_knows():
    body = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    assert isinstance(error_for(500, body), ModelAPIError)
    assert isinstance(error_for(503, body), ModelAPIError)  # a request the batch did not reach
    assert isinstance(error_for(429, body), ModelRateLimitError)
    assert isinstance(error_for(404, body), ModelNotFoundError)
    assert isinstance(error_for(400, body), ModelInvalidRequestError)
    assert "boom" in str(error_for(500, body)) and "api_error" in str(error_for(500, body))
    assert is_transient(error_for(500, body)) and is_transient(error_for(503, body))
    assert not is_transient(error_for(404, body)) and not is_transient(error_for(400, body))


def test_each_kind_of_result_line_maps_to_its_http_response():
    ok = _result({"custom_id": "a", "result": {"type": "succeeded", "message": MESSAGE}})
    assert ok == LineResult(200, MESSAGE)
    errored = _result({"custom_id": "b", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}})  # fmt: skip
    assert errored.status == 529 and errored.body["error"]["message"] == "busy"
    invalid = _result({"custom_id": "c", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}}})  # fmt: skip
    assert invalid.status == 400
    for kind, code in (("expired", "batch_expired"), ("canceled", "batch_cancelled")):
        line = _result({"custom_id": "d", "result": {"type": kind}})
        assert line.status == 503 and line.body["error"]["code"] == code


def test_a_request_line_is_custom_id_and_params_and_the_id_fits_anthropics_rule():
    provider = AnthropicBatches(chat_anthropic(), 10)
    params = to_params([HumanMessage("hi")], SETTINGS)
    cid = custom_id("/v1/messages", params, 12)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid)
    request = provider.request(cid, "/v1/messages", params)
    assert json.loads(request.line) == {"custom_id": cid, "params": params}
    assert request.model == "claude-x" and request.tokens > 0


# --- choosing the provider -------------------------------------------------------


def test_a_chat_anthropic_gets_the_anthropic_provider_and_others_a_clear_error():
    assert isinstance(provider_for(chat_anthropic(), BatchOptions()), AnthropicBatches)
    with pytest.raises(ConfigurationError, match="FakeListChatModel"):
        provider_for(FakeListChatModel(responses=["x"]), BatchOptions())
    with pytest.raises(ConfigurationError, match="thinking"):
        BatchSession(chat_anthropic(thinking={"type": "enabled", "budget_tokens": 1024}))


# --- the batched model, on a route of the test's own ---------------------------------


def batched(route, direct=None, calls=None):
    provider = AnthropicBatches(chat_anthropic(temperature=0.1), 10)
    model = provider.batched_model(
        route, lambda: calls.append("direct") if calls is not None else None
    )
    if direct is not None:
        model = model.model_copy(update={"direct_model": direct})
    return model


async def test_the_batched_model_sends_params_and_reads_the_result_through_the_budget():
    seen = []

    async def route(endpoint, params):
        seen.append((endpoint, params))
        return LineResult(200, {**MESSAGE, "service_tier": "batch"})

    llm = with_budget(batched(route), RateBudget())
    prices = PriceTable(
        {
            "claude-x": ModelPrice(
                input=1.0,
                output=5.0,
                cached_input=0.1,
                batch_input=0.5,
                batch_output=2.5,
                batch_cached_input=0.05,
            )
        }
    )
    meter = CostMeter(prices, model="claude-x")
    item = meter.item("i1")
    reply = await llm.ainvoke(
        [SystemMessage("sys"), HumanMessage("hi")], config={"callbacks": [item]}
    )
    assert reply.content == "echo: hi"
    assert seen == [("/v1/messages", {
        "model": "claude-x", "max_tokens": 50, "temperature": 0.1, "system": "sys",
        "messages": [{"role": "user", "content": "hi"}]})]  # fmt: skip
    # priced at the batch price: the same flag the OpenAI path sets
    assert item.batch_saved_usd > 0 and item.cost_usd == pytest.approx(item.batch_saved_usd)
    # a bound max_tokens (the story chain's llm.bind) goes into the params
    await llm.bind(max_tokens=7).ainvoke("x")
    assert seen[-1][1]["max_tokens"] == 7


async def test_a_failed_line_raises_and_the_budget_retries_it():
    results = [LineResult(503, {"error": {"type": "batch_error", "message": "expired"}}),
               LineResult(200, MESSAGE)]  # fmt: skip

    async def route(endpoint, params):
        return results.pop(0)

    fast = RetryPolicy(max_retries=2, initial=0.01, max_wait=0.02, jitter=0.0)
    llm = with_budget(batched(route), RateBudget(), retry=fast)
    assert (await llm.ainvoke("hi")).content == "echo: hi"
    assert results == []
    with pytest.raises(ModelNotFoundError, match="no such model"):
        await batched(lambda e, p: _answer(LineResult(404, {"error": {
            "type": "not_found_error", "message": "no such model"}}))).ainvoke("hi")  # fmt: skip


async def _answer(result):
    return result


async def test_a_call_the_session_sends_on_its_own_goes_to_the_direct_model():
    calls = []

    async def route(endpoint, params):
        return None

    model = batched(route, direct=FakeListChatModel(responses=["sent alone"]), calls=calls)
    assert (await model.ainvoke("hi")).content == "sent alone"
    assert calls == ["direct"]


async def test_the_llm_cache_tells_batched_models_apart():
    from langchain_core.caches import InMemoryCache

    from lc_async_pipelines.runner import with_cache

    seen = []

    async def route(endpoint, params):
        seen.append(params["model"])
        return LineResult(200, {**MESSAGE, "model": params["model"]})

    cache = InMemoryCache()
    model = batched(route)
    other = model.model_copy(update={"model": "claude-y"})
    for llm in (model, model, other):
        await with_cache(llm, cache).ainvoke("hi")
    assert seen == ["claude-x", "claude-y"]  # the second call of claude-x was a cache hit
