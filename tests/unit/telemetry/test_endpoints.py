"""Telemetry against real clients on in-process endpoints: ChatOpenAI on the benchmark mock,
the Batch API stages, the news tools, the service's traceparent; no secret in any attribute."""

import importlib

import openai
from langchain_openai import ChatOpenAI

from benchmarks.mock_server import MockConfig, create_app
from lc_async_pipelines import build_summary_chain
from lc_async_pipelines._scrub import register_secret
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    run_items,
    with_budget,
)
from lc_async_pipelines.runner.batch import BatchOptions, BatchSession, batches_path
from lc_async_pipelines.telemetry import names
from tests.unit.fakes import cycling_llm

http = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
FAST = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.002, jitter=0.001)
KEY = "sk-telemetry-secret-0123456789abcdef"
PASSWORD = "pw-in-the-url-4242"


def model_on(app, **kwargs):
    client = openai.DefaultAsyncHttpxClient(transport=http.ASGITransport(app=app))
    return ChatOpenAI(model="mock", api_key=KEY, base_url=f"http://user:{PASSWORD}@mock:8080/v1",
                      max_retries=0, http_async_client=client, **kwargs)  # fmt: skip


def every_value(spans) -> list[str]:
    values = []
    for span in spans:
        values += [str(v) for v in span.attributes.values()]
        values.append(str(span.status.description))
        for event in span.events:
            values += [str(v) for v in event.attributes.values()]
    return values


async def test_no_secret_reaches_an_attribute_an_event_or_a_status(traced):
    register_secret(KEY)
    # a leaky endpoint: its 500s carry the request's headers, the key included
    app = create_app(MockConfig(fault_rate=1.0, faults=("500",), echo_headers=True))
    llm = with_budget(model_on(app), RateBudget(), retry=FAST)
    [record] = [r async for r in run_items(llm, [Item("x", 1, "hi")], RunOptions(retry=FAST))]
    assert not record.ok
    spans = traced.spans()
    [call] = traced.spans("chat")
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["server.address"] == "mock"
    assert call.attributes["server.port"] == 8080
    assert len([e for e in call.events if e.name == names.RETRY_EVENT]) == 2
    values = every_value(spans)
    assert not any(KEY in v or PASSWORD in v or "Bearer" in v for v in values)


async def test_chat_openai_spans_carry_the_endpoints_usage(traced):
    app = create_app(MockConfig())
    llm = with_budget(model_on(app, max_tokens=32), RateBudget(), retry=FAST)
    [record] = [r async for r in run_items(llm, [Item("x", 1, "a short text to sum up")])]
    assert record.ok
    [call] = traced.spans("chat")
    assert call.attributes["gen_ai.request.model"] == "mock"
    assert call.attributes["gen_ai.request.max_tokens"] == 32
    assert call.attributes["gen_ai.usage.input_tokens"] == record.usage["input_tokens"]
    assert call.attributes["gen_ai.usage.output_tokens"] == record.usage["output_tokens"]
    assert call.attributes["gen_ai.response.model"] == "mock"
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_streamed_chat_openai_call_keeps_its_model_finish_reason_and_usage(traced):
    app = create_app(MockConfig())
    llm = with_budget(model_on(app, stream_usage=True), RateBudget())
    text = "".join([c.text async for c in llm.astream("a short text")])
    [call] = traced.spans("chat")
    assert call.attributes["gen_ai.response.model"] == "mock"
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert call.attributes["gen_ai.usage.output_tokens"] == len(text.split())


async def test_the_batch_api_stages_are_spans(traced, tmp_path):
    app = create_app(MockConfig(batch_delay_s=0.02))
    options = BatchOptions(
        state_path=batches_path(tmp_path / "out.jsonl"),
        settle_s=0.02,
        poll_initial_s=0.01,
        poll_max_s=0.02,
    )
    items = [Item(f"d{i}", i + 1, f"document {i}") for i in range(3)]
    async with BatchSession(model_on(app), options) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        # the mock's echo of the prompt (about 19 words) is within 20 ±30%: one call an item
        chain = build_summary_chain(llm, max_words=20)
        records = [r async for r in run_items(chain, items, RunOptions(concurrency=10))]
    assert all(r.ok for r in records)
    for name in (names.BATCH_UPLOAD_SPAN, names.BATCH_WAIT_SPAN, names.BATCH_DOWNLOAD_SPAN):
        [span] = traced.spans(name)
        assert span.attributes["pipelines.batch.requests"] == 3
        assert span.attributes["gen_ai.request.model"] == "mock"


async def test_news_tools_are_execute_tool_spans(traced):
    from lc_async_pipelines.news import build_news_tool_chain, news_tools
    from tests.unit.news.test_news_chain import analysis_json, news_llm, page_site

    site = page_site()
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        await chain.ainvoke("http://news.test/a")
    tools = traced.spans("execute_tool")
    assert {s.attributes["gen_ai.tool.name"] for s in tools} == {
        "fetch_article",
        "article_metadata",
    }
    assert {s.attributes["gen_ai.operation.name"] for s in tools} == {"execute_tool"}


async def test_the_service_continues_the_callers_traceparent(traced, app_for):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    async with app_for(cycling_llm("A fox.")) as client:
        r = await client.post(
            "/v1/pipelines/story/invoke", json={"input": "a fox"}, headers=headers
        )
    assert r.status_code == 200
    [server] = traced.spans(names.SERVICE_SPAN)
    assert format(server.context.trace_id, "032x") == trace_id
    assert format(server.parent.span_id, "016x") == parent_id
    assert server.attributes["http.response.status_code"] == 200
    [run] = traced.spans(names.RUN_SPAN)
    assert run.parent.span_id == server.context.span_id
    assert {format(s.context.trace_id, "032x") for s in traced.spans()} == {trace_id}
