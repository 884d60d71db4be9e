"""Spans, events and metrics of a run, its items and their model calls (telemetry into memory)."""

import asyncio

import httpx
import openai
from langchain_core.messages import AIMessage

from lc_async_pipelines import build_map_reduce_summary_chain, telemetry
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    run_items,
    with_budget,
)
from lc_async_pipelines.telemetry import names
from tests.unit.fakes import FnChatModel
from tests.unit.telemetry.conftest import capture

FAST = RetryPolicy(max_retries=3, initial=0.001, max_wait=0.002, jitter=0.001)


def status_error(status: int, headers: dict | None = None):
    request = httpx.Request("POST", "http://model/v1/chat/completions")
    response = httpx.Response(status, request=request, headers=headers or {}, text="boom")
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError}[status]
    return cls("boom", response=response, body=None)


def reply(messages, **_):
    prompt = sum(len(m.text) for m in messages)
    return AIMessage(
        content="A summary.",
        usage_metadata={
            "input_tokens": prompt,
            "output_tokens": 3,
            "total_tokens": prompt + 3,
            "input_token_details": {"cache_read": 2},
        },
        response_metadata={"model_name": "fake-1-2025", "finish_reason": "stop"},
    )


def long_document(chunks: int) -> str:
    return "\n\n".join(f"Part {i}. " + f"A sentence about part {i}. " * 40 for i in range(chunks))


async def run(chain, items, **options):
    options.setdefault("retry", FAST)
    return [r async for r in run_items(chain, items, RunOptions(**options))]


class NamedModel(FnChatModel):
    model: str = "fake-1"


def model(fn) -> FnChatModel:
    return NamedModel(fn=fn)


async def test_a_run_nests_items_and_model_calls_with_genai_attributes(traced):
    async def fn(messages, **_):
        return reply(messages)

    llm = with_budget(model(fn), RateBudget(), retry=FAST).bind(max_tokens=64)
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=300)
    items = [Item("a", 1, long_document(3)), Item("b", 2, long_document(2))]
    records = await run(chain, items, trace_attributes={"pipelines.pipeline": "summary"})

    [run_span] = traced.spans(names.RUN_SPAN)
    assert run_span.attributes["pipelines.pipeline"] == "summary"
    assert run_span.attributes["pipelines.run.items_done"] == 2
    item_spans = {s.attributes["pipelines.item.id"]: s for s in traced.spans(names.ITEM_SPAN)}
    assert set(item_spans) == {"a", "b"}
    for record in records:
        span = item_spans[record.id]
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes["pipelines.item.outcome"] == "ok"
        assert span.attributes["pipelines.item.line"] == record.line
        assert span.attributes["pipelines.item.attempts"] == record.attempts
        calls = [s for s in traced.spans("chat") if s.parent.span_id == span.context.span_id]
        assert len(calls) == record.calls
        # the spans' tokens are the record's usage
        assert (
            sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls)
            == (record.usage["input_tokens"])
        )
        assert (
            sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls)
            == (record.usage["output_tokens"])
        )
    call = traced.spans("chat")[0]
    assert call.name == "chat fake-1"
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.request.model"] == "fake-1"
    assert call.attributes["gen_ai.response.model"] == "fake-1-2025"
    assert call.attributes["gen_ai.request.max_tokens"] > 0  # the chain's own, per step
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert call.attributes["gen_ai.usage.cache_read.input_tokens"] == 2
    assert call.attributes["gen_ai.provider.name"] == "NamedModel"
    assert "gen_ai.input.messages" not in call.attributes  # content only when asked
    assert "gen_ai.output.messages" not in call.attributes
    tokens = sum(r.usage["input_tokens"] + r.usage["output_tokens"] for r in records)
    assert traced.total(names.TOKEN_USAGE_METRIC) == tokens
    assert traced.total(names.REQUESTS_METRIC) == sum(r.calls for r in records)
    assert traced.total(names.ITEMS_METRIC, **{"pipelines.item.outcome": "ok"}) == 2
    [duration] = traced.metric_points(names.DURATION_METRIC)
    assert duration.count == sum(r.calls for r in records)


async def test_a_500_and_a_429_are_retry_events_on_the_call_and_the_429_a_pause(traced):
    failures = [status_error(500), status_error(429, {"retry-after-ms": "5"})]

    async def fn(messages, **_):
        if failures:
            raise failures.pop(0)
        return reply(messages)

    llm = with_budget(model(fn), RateBudget(rpm=60_000, cooldown_s=0.001), retry=FAST)
    [record] = await run(llm, [Item("x", 1, "hello")])
    assert record.ok

    [call] = traced.spans("chat")
    retries = [e for e in call.events if e.name == names.RETRY_EVENT]
    assert [e.attributes["http.response.status_code"] for e in retries] == [500, 429]
    assert [e.attributes["error.type"] for e in retries] == [
        "InternalServerError",
        "RateLimitError",
    ]
    assert [e.attributes["pipelines.retry.attempt"] for e in retries] == [1, 2]
    assert all(e.attributes["pipelines.retry.wait_s"] >= 0 for e in retries)
    [pause] = [e for e in call.events if e.name == names.RATE_LIMIT_EVENT]
    assert pause.attributes["http.response.status_code"] == 429
    assert pause.attributes["pipelines.rate_limit.paused"] is True
    assert traced.total(names.RETRIES_METRIC) == 2
    assert traced.total(names.RATE_LIMITS_METRIC) == 1
    assert traced.total(names.REQUESTS_METRIC) == 3


async def test_a_call_that_fails_marks_its_span_and_its_item(traced):
    async def fn(messages, **_):
        raise status_error(500)

    llm = with_budget(model(fn), RateBudget(), retry=RetryPolicy(max_retries=0))
    [record] = await run(llm, [Item("x", 1, "hello")], retry=RetryPolicy(max_retries=0))
    assert not record.ok
    [call] = traced.spans("chat")
    assert call.attributes["error.type"] == "InternalServerError"
    assert not call.status.is_ok
    [item] = traced.spans(names.ITEM_SPAN)
    assert item.attributes["pipelines.item.outcome"] == "failed"
    assert item.attributes["error.type"] == "InternalServerError"
    assert traced.total(names.ITEMS_METRIC, **{"pipelines.item.outcome": "failed"}) == 1
    [duration] = traced.metric_points(names.DURATION_METRIC)
    assert duration.attributes["error.type"] == "InternalServerError"


async def test_a_call_held_by_max_in_flight_has_a_budget_wait_span(traced):
    release = asyncio.Event()

    async def fn(messages, **_):
        await release.wait()
        return reply(messages)

    budget = RateBudget(max_in_flight=1)
    llm = with_budget(model(fn), budget)
    bound = llm.bind(max_tokens=64)
    chain_runs = asyncio.gather(*(bound.ainvoke(f"call {i}") for i in range(3)))
    while budget.waiting < 2:  # noqa: ASYNC110  (a count, no event): two wait behind the first
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # a wait long enough for a span (over 1 ms)
    release.set()
    await chain_runs

    waits = traced.spans(names.BUDGET_WAIT_SPAN)
    assert len(waits) == 2
    assert {w.attributes["pipelines.budget.limit"] for w in waits} == {"in_flight"}
    assert sorted(w.attributes["pipelines.budget.queue_depth"] for w in waits) == [0, 1]
    calls = {s.context.span_id for s in traced.spans("chat")}
    assert all(w.parent.span_id in calls for w in waits)  # inside the call it held
    assert {s.attributes["gen_ai.request.max_tokens"] for s in traced.spans("chat")} == {64}
    assert traced.total(names.BUDGET_WAIT_METRIC, **{"pipelines.budget.limit": "in_flight"}) > 0


async def test_prompt_and_reply_text_only_when_the_env_asks(monkeypatch):
    async def fn(messages, **_):
        return reply(messages)

    monkeypatch.setenv(names.CAPTURE_CONTENT_ENV, "true")
    captured = capture()
    try:
        llm = with_budget(model(fn), RateBudget())
        await llm.ainvoke("a secretless prompt")
    finally:
        telemetry.shutdown_telemetry()
    [call] = captured.spans("chat")
    assert "a secretless prompt" in call.attributes["gen_ai.input.messages"]
    assert '"role": "user"' in call.attributes["gen_ai.input.messages"]
    assert "A summary." in call.attributes["gen_ai.output.messages"]


class StreamingModel(FnChatModel):
    """Streams two chunks, the last with the usage and finish reason, as ChatOpenAI does."""

    model: str = "fake-stream"

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        yield ChatGenerationChunk(message=AIMessageChunk(content="two "))
        usage = {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
        last = AIMessageChunk(
            content="words", usage_metadata=usage, response_metadata={"finish_reason": "stop"}
        )
        yield ChatGenerationChunk(message=last)


async def test_a_streamed_call_is_one_span_with_its_usage(traced):
    llm = with_budget(StreamingModel(fn=lambda *a, **k: None), RateBudget())
    chunks = [c async for c in llm.astream("hi")]
    assert "".join(c.text for c in chunks) == "two words"
    [call] = traced.spans("chat")
    assert call.attributes["gen_ai.usage.input_tokens"] == 7
    assert call.attributes["gen_ai.usage.output_tokens"] == 2
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert call.attributes["gen_ai.provider.name"] == "StreamingModel"
