from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from lc_async_pipelines import (
    build_auto_summary_chain,
    build_map_reduce_summary_chain,
    build_story_chain,
    build_summary_chain,
    split_into_chunks,
)
from lc_async_pipelines.callbacks import QueueCallbackHandler
from tests.unit.fakes import cycling_llm, fake_llm


async def test_story_chain_returns_text_and_streams_tokens():
    import asyncio

    queue: asyncio.Queue = asyncio.Queue()
    chain = build_story_chain(fake_llm(["Once upon a time. The end."]))
    out = await chain.ainvoke("a magical forest", {"callbacks": [QueueCallbackHandler(queue)]})
    assert out == "Once upon a time. The end."
    tokens = []
    while not queue.empty():
        event = queue.get_nowait()
        if event.kind == "token":
            tokens.append(event.text)
    assert len(tokens) > 1 and "".join(tokens) == out


async def test_story_with_outline_feeds_outline_to_second_call():
    seen = []

    def model(prompt, **_):
        text = prompt.to_messages()[-1].content
        seen.append(text)
        return AIMessage(content="1. Start. 2. Middle. 3. End." if len(seen) == 1 else "Story.")

    chain = build_story_chain(RunnableLambda(model), outline=True)
    assert await chain.ainvoke("a futuristic city") == "Story."
    assert len(seen) == 2 and "2. Middle." in seen[1]


async def test_summary_abatch_keeps_order():
    def model(prompt, **_):
        return AIMessage(content=prompt.to_messages()[-1].content.split("\n")[0] + ".")

    docs = [f"doc{i} text" for i in range(6)]
    outs = await build_summary_chain(RunnableLambda(model)).abatch(docs, {"max_concurrency": 3})
    assert outs == [d + "." for d in docs]


def test_split_into_chunks_respects_size():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 200 for i in range(10))
    chunks = split_into_chunks(text, chunk_tokens=400)
    assert len(chunks) > 3
    assert all(len(c) / 3.5 <= 400 for c in chunks)


async def test_map_reduce_maps_each_chunk_then_combines():
    calls = []

    def model(prompt, **_):
        text = prompt.to_messages()[-1].content
        calls.append(text)
        if text.startswith("These are summaries"):
            return AIMessage(content="Whole plot.")
        return AIMessage(content="Part summary.")

    doc = "\n\n".join("Sentence here. " * 60 for _ in range(8))
    chain = build_map_reduce_summary_chain(RunnableLambda(model), chunk_tokens=500)
    assert await chain.ainvoke(doc) == "Whole plot."
    n_chunks = len(split_into_chunks(doc, 500))
    assert n_chunks > 1
    assert len(calls) == n_chunks + 1
    assert calls[-1].count("Part summary.") == n_chunks


async def test_auto_summary_routes_by_length():
    chain = build_auto_summary_chain(cycling_llm("Short."), chunk_tokens=200, stuff_max_tokens=300)
    assert await chain.ainvoke("tiny doc") == "Short."
    assert await chain.ainvoke("long " * 2000) == "Short."
