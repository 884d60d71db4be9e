import asyncio

from langchain_core.messages import AIMessage

from lc_async_pipelines import build_map_reduce_summary_chain, build_story_chain
from lc_async_pipelines.callbacks import QueueCallbackHandler
from lc_async_pipelines.runner import Item, RateBudget, run_items, with_budget
from lc_async_pipelines.runner.budget import _Bucket
from tests.unit.fakes import ConcurrencyProbe, FnChatModel, fake_llm


async def test_in_flight_cap_holds_across_nested_map_calls():
    probe = ConcurrencyProbe("Summary.")
    llm = with_budget(FnChatModel(fn=probe), RateBudget(max_in_flight=3))
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=200)
    docs = [Item(f"d{i}", i, f"Doc {i}. " + "Sentence here. " * 300) for i in range(4)]
    # 4 items x many chunks, each abatch with its own max_concurrency=4: 16 could run at once
    records = [r async for r in run_items(chain, docs, config={"max_concurrency": 4})]
    assert all(r.ok for r in records)
    assert probe.peak == 3


async def test_bound_kwargs_and_streamed_tokens_pass_through():
    queue: asyncio.Queue = asyncio.Queue()
    seen_kwargs = {}

    async def spy(messages, **kwargs):
        seen_kwargs.update(kwargs)
        return AIMessage(content="A story.")

    chain = build_story_chain(
        with_budget(FnChatModel(fn=spy), RateBudget(tpm=10_000)), max_words=50
    )
    assert await chain.ainvoke("x") == "A story."
    assert seen_kwargs["max_tokens"] > 50

    chain = build_story_chain(with_budget(fake_llm(["A story. The end."]), RateBudget()))
    out = await chain.ainvoke("x", {"callbacks": [QueueCallbackHandler(queue)]})
    assert out == "A story. The end."
    kinds = [queue.get_nowait().kind for _ in range(queue.qsize())]
    assert kinds.count("token") > 1


async def test_call_larger_than_tpm_bucket_does_not_deadlock():
    async def model(messages, **_):
        return AIMessage(content="ok.")

    # About 1,400 tokens against a bucket of 990: charged in pieces as it drains.
    llm = with_budget(FnChatModel(fn=model), RateBudget(tpm=60_000))
    result = await asyncio.wait_for(llm.ainvoke("word " * 600, max_tokens=500), timeout=30)
    assert result.content == "ok."


async def test_429_pauses_the_run_and_is_counted():
    import httpx
    import openai

    from lc_async_pipelines.runner import RetryPolicy

    request = httpx.Request("POST", "http://127.0.0.1/")
    failed = set()

    async def model(messages, **_):
        text = messages[-1].content
        if text not in failed:
            failed.add(text)
            response = httpx.Response(429, headers={"retry-after-ms": "20"}, request=request)
            raise openai.RateLimitError("slow down", response=response, body=None)
        return AIMessage(content="Fine.")

    budget = RateBudget(max_in_flight=2)
    chain = build_story_chain(with_budget(FnChatModel(fn=model), budget))
    docs = [Item(f"i{n}", n, f"topic {n}") for n in range(5)]
    fast = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.05, jitter=0.001)
    records = [r async for r in run_items(chain, docs, retry=fast)]
    assert all(r.ok and r.throttled == 1 and r.attempts == 2 for r in records)
    assert budget.throttled == 5


async def test_usage_below_the_estimate_is_refunded_to_the_tpm_bucket():
    async def model(messages, **_):
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return AIMessage(content="ok.", usage_metadata=usage)

    budget = RateBudget(tpm=60_000)  # a bucket of 990 tokens, full at the start
    llm = with_budget(FnChatModel(fn=model), budget)
    await llm.ainvoke("hello", max_tokens=600)
    # Charged about 600 before the call; 15 used, so about 585 came back.
    assert budget._tokens.has_capacity(500)
    assert budget.requests_sent == 1


async def test_usage_above_the_estimate_is_charged():
    async def model(messages, **_):
        usage = {"input_tokens": 10, "output_tokens": 700, "total_tokens": 710}
        return AIMessage(content="long.", usage_metadata=usage)

    budget = RateBudget(tpm=60_000)
    await with_budget(FnChatModel(fn=model), budget).ainvoke("hi", max_tokens=20)
    assert not budget._tokens.has_capacity(500)


async def test_refund_frees_capacity_and_wakes_a_waiter():
    bucket = _Bucket(100, 60)
    await bucket.acquire(100)
    assert not bucket.has_capacity(50)
    waiter = asyncio.create_task(bucket.acquire(50))
    await asyncio.sleep(0)
    bucket.refund(60)
    await asyncio.wait_for(waiter, timeout=5)
    assert not bucket.has_capacity(50)


def test_with_budget_needs_a_chat_model():
    import pytest
    from langchain_core.runnables import RunnableLambda

    with pytest.raises(TypeError, match="chat model"):
        with_budget(RunnableLambda(lambda x: x), RateBudget())


async def test_fallback_reuses_the_slot_of_the_failed_request():
    async def broken(messages, **_):
        raise RuntimeError("model down")

    async def works(messages, **_):
        return AIMessage(content="From the fallback.")

    llm = FnChatModel(fn=broken).with_fallbacks([FnChatModel(fn=works)])
    budget = RateBudget(max_in_flight=1)
    reply = await asyncio.wait_for(with_budget(llm, budget).ainvoke("x"), timeout=5)
    assert reply.content == "From the fallback."
    assert budget.requests_sent == 2
