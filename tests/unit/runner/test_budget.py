import asyncio

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from callbacks import QueueCallbackHandler
from pipelines import build_map_reduce_summary_chain, build_story_chain
from pipelines.runner import Item, RateBudget, run_items, with_budget
from tests.unit.fakes import fake_llm


async def test_in_flight_cap_holds_across_nested_map_calls():
    live = peak = 0

    async def model(prompt, **_):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.001)
        live -= 1
        return AIMessage(content="Summary.")

    llm = with_budget(RunnableLambda(model), RateBudget(max_in_flight=3))
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=200)
    docs = [Item(f"d{i}", i, f"Doc {i}. " + "Sentence here. " * 300) for i in range(4)]
    # 4 items x many chunks, each abatch with its own max_concurrency=4: 16 could run at once
    records = [r async for r in run_items(chain, docs, config={"max_concurrency": 4})]
    assert all(r.ok for r in records)
    assert peak == 3


async def test_bound_kwargs_and_streamed_tokens_pass_through():
    queue: asyncio.Queue = asyncio.Queue()
    seen_kwargs = {}
    inner = fake_llm(["A story. The end."])

    async def spy(value, config, **kwargs):
        seen_kwargs.update(kwargs)
        return await inner.ainvoke(value, config, **kwargs)

    chain = build_story_chain(
        with_budget(RunnableLambda(spy), RateBudget(tpm=10_000)), max_words=50
    )
    out = await chain.ainvoke("x", {"callbacks": [QueueCallbackHandler(queue)]})
    assert out == "A story. The end."
    assert seen_kwargs["max_tokens"] > 50
    kinds = [queue.get_nowait().kind for _ in range(queue.qsize())]
    assert kinds.count("token") > 1


async def test_call_larger_than_tpm_bucket_does_not_deadlock():
    llm = with_budget(RunnableLambda(lambda p, **_: AIMessage(content="ok.")), RateBudget(tpm=100))
    result = await asyncio.wait_for(llm.ainvoke("word " * 2000, max_tokens=500), timeout=30)
    assert result.content == "ok."


async def test_429_pauses_the_run_and_is_counted():
    import httpx
    import openai

    from pipelines.runner import RetryPolicy

    request = httpx.Request("POST", "http://127.0.0.1/")
    failed = set()

    async def model(prompt, **_):
        text = prompt.to_messages()[-1].content
        if text not in failed:
            failed.add(text)
            response = httpx.Response(429, headers={"retry-after-ms": "20"}, request=request)
            raise openai.RateLimitError("slow down", response=response, body=None)
        return AIMessage(content="Fine.")

    budget = RateBudget(max_in_flight=2)
    chain = build_story_chain(with_budget(RunnableLambda(model), budget))
    docs = [Item(f"i{n}", n, f"topic {n}") for n in range(5)]
    fast = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.05, jitter=0.001)
    records = [r async for r in run_items(chain, docs, retry=fast)]
    assert all(r.ok and r.throttled == 1 and r.attempts == 2 for r in records)
    assert budget.throttled == 5
