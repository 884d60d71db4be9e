"""The session's model is a real chat model: it streams, binds tools, falls back, and is budgeted."""

import itertools

import httpx
import openai
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from lc_async_pipelines.callbacks import MetricsCallbackHandler, TerminalStreamHandler
from lc_async_pipelines.runner import (
    BudgetedChatModel,
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    run_items,
    with_budget,
)
from tests.unit.fakes import ConcurrencyProbe, FnChatModel

STORY = "Once upon a time the lighthouse keeper collected storms in jars ."


class CountingFake(GenericFakeChatModel):
    """A fake that counts how each call was served: streamed or plain."""

    streamed: int = 0
    plain: int = 0

    async def _astream(self, *args, **kwargs):
        self.streamed += 1
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk

    async def _agenerate(self, *args, **kwargs):
        self.plain += 1
        return await super()._agenerate(*args, **kwargs)


def counting(reply: str = STORY) -> CountingFake:
    return CountingFake(messages=itertools.repeat(AIMessage(content=reply)))


def status_error(status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://test/v1/chat/completions")
    response = httpx.Response(status, request=request, headers={"retry-after-ms": "1"})
    cls = openai.RateLimitError if status == 429 else openai.InternalServerError
    return cls(f"HTTP {status}", response=response, body=None)


async def test_it_is_a_chat_model_and_astream_yields_the_reply_in_pieces():
    llm = with_budget(counting(), RateBudget())
    assert isinstance(llm, BaseChatModel)
    chain = ChatPromptTemplate.from_template("{topic}") | llm | StrOutputParser()
    pieces = [p async for p in chain.astream({"topic": "storms"})]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces) == await chain.ainvoke({"topic": "storms"})


async def test_a_call_streams_only_when_someone_listens():
    llm = with_budget(counting(), RateBudget())
    fake = llm.models[0]  # the budget's copy of the model
    await llm.ainvoke("x")
    await llm.ainvoke("x", {"callbacks": [MetricsCallbackHandler()]})
    assert (fake.plain, fake.streamed) == (2, 0)

    class Listener(AsyncCallbackHandler):
        def __init__(self):
            self.tokens = []

        async def on_llm_new_token(self, token, **kwargs):
            self.tokens.append(token)

    listener = Listener()
    reply = await llm.ainvoke("x", {"callbacks": [listener]})
    assert fake.streamed == 1
    assert len(listener.tokens) > 3 and "".join(listener.tokens) == reply.content


async def test_the_terminal_handler_asks_for_tokens_and_gets_them(capsys):
    llm = with_budget(counting(), RateBudget())
    await llm.ainvoke("x", {"callbacks": [TerminalStreamHandler(tagged=False)]})
    fake = llm.models[0]
    assert fake.streamed == 1
    assert "lighthouse keeper" in capsys.readouterr().out


async def test_astream_events_streams_through_the_wrapper():
    llm = with_budget(counting(), RateBudget())
    events = [e async for e in llm.astream_events("x", version="v2")]
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert len(streamed) > 3


async def test_every_request_is_charged_and_counted_once():
    budget = RateBudget(rpm=6000)
    metrics = MetricsCallbackHandler()
    llm = with_budget(counting("one two three"), budget)
    await llm.ainvoke("x", {"callbacks": [metrics]})
    [chunk async for chunk in llm.astream("x")]
    assert budget.requests_sent == 2
    assert len(metrics.calls) == 1  # the wrapper's run only: the wrapped model reports to no one


async def test_the_primary_s_failure_is_logged_its_429_pauses_and_the_fallback_answers():
    async def primary(messages, **kwargs):
        raise status_error(429)

    async def backup(messages, **kwargs):
        return AIMessage(content="from the fallback")

    budget = RateBudget(cooldown_s=0.0)
    llm = with_budget(FnChatModel(fn=primary), budget, fallbacks=[FnChatModel(fn=backup)])
    chain = ChatPromptTemplate.from_template("{text}") | llm | StrOutputParser()
    [record] = [r async for r in run_items(chain, [Item("a", 1, "hi")], RunOptions())]
    assert record.output == "from the fallback"
    assert budget.throttled == 1  # the primary's 429 reached the budget
    assert budget.requests_sent == 2  # both requests were charged
    assert [h["status"] for h in record.history] == [429]
    assert "model" in record.history[0]  # with fallbacks, each failure names its model
    assert record.throttled == 1


async def test_a_session_style_with_fallbacks_model_is_unpacked():
    async def primary(messages, **kwargs):
        raise status_error(500)

    async def backup(messages, **kwargs):
        return AIMessage(content="ok")

    chained = FnChatModel(fn=primary).with_fallbacks([FnChatModel(fn=backup)])
    llm = with_budget(chained, RateBudget())
    assert isinstance(llm, BudgetedChatModel) and len(llm.models) == 2
    assert (await llm.ainvoke("x")).content == "ok"


async def test_calls_are_retried_alone_and_the_backoff_is_logged():
    calls = []

    async def flaky(messages, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise status_error(500)
        return AIMessage(content="third time")

    retry = RetryPolicy(max_retries=3, initial=0.001, max_wait=0.01, jitter=0)
    chain = ChatPromptTemplate.from_template("{text}") | with_budget(
        FnChatModel(fn=flaky), RateBudget(), retry=retry
    )
    [record] = [r async for r in run_items(chain, [Item("a", 1, "hi")], RunOptions())]
    assert record.output.content == "third time"
    assert [h["status"] for h in record.history] == [500, 500]
    assert all(h["wait_s"] is not None for h in record.history)


async def test_a_stream_is_retried_before_its_first_chunk():
    tries = []

    class FlakyStream(GenericFakeChatModel):
        async def _astream(self, *args, **kwargs):
            tries.append(1)
            if len(tries) == 1:
                raise status_error(503)
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk

    model = FlakyStream(messages=itertools.repeat(AIMessage(content="a b c d")))
    retry = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.01, jitter=0)
    llm = with_budget(model, RateBudget(), retry=retry)
    pieces = [c.content async for c in llm.astream("x")]
    assert "".join(pieces) == "a b c d" and len(tries) == 2


async def test_bind_tools_keeps_the_budgeted_model():
    seen = {}

    async def answer(messages, **kwargs):
        seen.update(kwargs)
        return AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "1"}])

    class ToolFake(FnChatModel):
        def bind_tools(self, tools, **kwargs):
            return self.bind(tools=[t.name for t in tools], **kwargs)

    @tool
    def add(a: int) -> int:
        """Add one."""
        return a + 1

    budget = RateBudget()
    bound = with_budget(ToolFake(fn=answer), budget).bind_tools([add], tool_choice="auto")
    reply = await bound.ainvoke("x")
    assert isinstance(bound.bound, BudgetedChatModel)
    assert reply.tool_calls[0]["name"] == "add"
    assert seen == {"tools": ["add"], "tool_choice": "auto"}
    assert budget.requests_sent == 1


async def test_queue_time_is_kept_apart_from_latency():
    async def answer(messages, **kwargs):
        return AIMessage(content="ok")

    # 1200 RPM: one request every 0.05 s, so every item after the first waits
    chain = ChatPromptTemplate.from_template("{text}") | with_budget(
        FnChatModel(fn=answer), RateBudget(rpm=1200)
    )
    items = [Item(str(i), i, "hi") for i in range(6)]
    records = [r async for r in run_items(chain, items, RunOptions(concurrency=6))]
    assert all(r.ok for r in records)
    assert max(r.queued_s for r in records) > 0
    assert all("queued_s" in r.to_dict() for r in records)
    assert all(r.ttft_s is None for r in records)  # nothing listened: no call streamed


def test_sync_calls_are_refused_with_a_clear_error():
    llm = with_budget(counting(), RateBudget())
    with pytest.raises(RuntimeError, match="async-only"):
        llm.invoke("x")


async def test_a_ready_runnable_s_own_model_is_put_under_the_budget():
    from lc_async_pipelines.runner.limits.chat_model import govern

    probe = ConcurrencyProbe(delay_s=0.01)
    ready = ChatPromptTemplate.from_template("{text}") | FnChatModel(fn=probe) | StrOutputParser()
    budget = RateBudget(max_in_flight=1)
    governed = govern(ready, budget)
    outputs = await governed.abatch([{"text": str(i)} for i in range(6)])
    assert outputs == ["Done."] * 6
    assert budget.requests_sent == 6 and probe.peak == 1  # the run's limits reached its model


def test_a_ready_runnable_whose_model_cannot_be_reached_is_refused():
    from langchain_core.runnables import RunnableLambda

    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.runner.limits.chat_model import govern

    hidden = RunnableLambda(lambda text: counting().invoke(text))
    with pytest.raises(ConfigurationError, match="cannot be reached"):
        govern(hidden, RateBudget())


async def test_a_call_after_the_session_closed_is_a_clear_error():
    from lc_async_pipelines.errors import ConfigurationError

    llm = with_budget(counting(), RateBudget())
    await llm.ainvoke("x")
    llm.close()
    with pytest.raises(ConfigurationError, match="session is closed"):
        await llm.ainvoke("x")


def test_a_budgeted_openai_client_reports_a_stream_s_usage():
    from langchain_openai import ChatOpenAI

    bare = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert not bare.stream_usage
    budgeted = with_budget(bare, RateBudget())
    assert isinstance(budgeted, ChatOpenAI) and budgeted.stream_usage  # TPM and costs see it


class _Headed(BaseChatModel):
    """Streams headers on its first chunk and usage on its last, as ChatOpenAI does."""

    @property
    def _llm_type(self) -> str:
        return "headed"

    def _generate(self, *args, **kwargs):
        raise NotImplementedError

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        headers = {"x-ratelimit-remaining-requests": "5"}
        usage = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
        for message in (
            AIMessageChunk(content="one", response_metadata={"headers": headers}),
            AIMessageChunk(content=" two", response_metadata={"model_name": "m"}),
            AIMessageChunk(content="", usage_metadata=usage),
        ):
            yield ChatGenerationChunk(message=message)


async def test_a_streamed_call_gives_the_budget_its_headers_and_usage(monkeypatch):
    import contextlib

    from lc_async_pipelines.runner.limits import chat_model as module

    tickets = []
    real = module.charged_call

    @contextlib.asynccontextmanager
    async def spied(*args, **kwargs):
        async with real(*args, **kwargs) as ticket:
            yield ticket
        tickets.append(ticket)

    monkeypatch.setattr(module, "charged_call", spied)
    llm = with_budget(_Headed(), RateBudget(rpm=6000, tpm=100_000))
    listened = await llm.ainvoke("x", {"callbacks": [TerminalStreamHandler(tagged=False)]})
    pieces = [chunk async for chunk in llm.astream("x")]
    assert listened.content == "".join(str(p.content) for p in pieces) == "one two"
    assert [(t.used, dict(t.headers or {})) for t in tickets] == [
        (7, {"x-ratelimit-remaining-requests": "5"})
    ] * 2
