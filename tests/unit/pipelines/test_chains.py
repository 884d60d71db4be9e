import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from lc_async_pipelines import (
    build_auto_summary_chain,
    build_map_reduce_summary_chain,
    build_story_chain,
    build_summary_chain,
    split_into_chunks,
)
from lc_async_pipelines._finish import hold_from_chars
from lc_async_pipelines._text import max_tokens_for_words
from lc_async_pipelines.callbacks import QueueCallbackHandler
from tests.unit.fakes import fake_llm


def cycling_llm(reply: str):
    """A model that always streams ``reply``, safe from several threads at once.

    ``GenericFakeChatModel`` has no async methods: concurrent map calls run it in
    executor threads, where two ``next()`` on one generator raise "generator
    already executing" (``tests.unit.fakes.cycling_llm`` uses a generator);
    ``itertools.repeat`` is a C iterator, which they may share.
    """
    model = GenericFakeChatModel(messages=itertools.repeat(AIMessage(content=reply)))
    return model.bind(stream=True)


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
    chain = build_summary_chain(RunnableLambda(model), max_words=2)  # in range: no lengthening
    outs = await chain.abatch(docs, {"max_concurrency": 3})
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
    chain = build_map_reduce_summary_chain(
        RunnableLambda(model), chunk_tokens=500, max_words=2, map_words=2
    )
    assert await chain.ainvoke(doc) == "Whole plot."
    n_chunks = len(split_into_chunks(doc, 500))
    assert n_chunks > 1
    assert len(calls) == n_chunks + 1
    assert calls[-1].count("Part summary.") == n_chunks


async def test_auto_summary_routes_by_length():
    chain = build_auto_summary_chain(cycling_llm("Short."), chunk_tokens=200, stuff_max_tokens=300)
    assert await chain.ainvoke("tiny doc") == "Short."
    assert await chain.ainvoke("long " * 2000) == "Short."


# --- streaming, trimming of a cut reply, typed schemas ---------------------------------------


FACTORIES = {
    "story": (build_story_chain, {}),
    "story_outline": (build_story_chain, {"outline": True}),
    "summary": (build_summary_chain, {}),
    "map_reduce": (build_map_reduce_summary_chain, {"chunk_tokens": 200}),
    "auto_stuff": (build_auto_summary_chain, {}),
    "auto_map_reduce": (build_auto_summary_chain, {"chunk_tokens": 200, "stuff_max_tokens": 300}),
}
LONG_DOC = "\n\n".join("Sentence here. " * 40 for _ in range(6))
# A reply whose last sentence end lies in the last stretch of a 40-word budget, then a cut.
WHOLE = (
    "The fox ran far across the quiet hills at dawn. It found a hidden river under an "
    "old stone bridge. The water was cold and clear, and it drank for a long time. "
    "Then it rested in the shade of a tall oak until the sun was high."
)
CUT_REPLY = WHOLE + " Far away, a sound came from the"


def _input_for(name: str) -> str:
    return LONG_DOC if "map_reduce" in name else "a short document about a fox"


def _forty_words(name: str) -> dict[str, int]:
    return {"max_words": 40, "long_max_words": 40} if name.startswith("auto") else {"max_words": 40}


class ChunkedChatModel(BaseChatModel):
    """Streams ``reply`` a word at a time, then says why it stopped, as ChatOpenAI does.

    ``layout="last"``: ``finish_reason`` in the last content chunk's response_metadata;
    ``layout="openai"``: an empty chunk with it, then a usage chunk (langchain-openai's
    order with ``stream_usage=True``). ``log`` records each chunk as it is produced.
    """

    reply: str
    finish_reason: str | None = "stop"
    layout: str = "last"
    log: Any = None  # a list; Any, so pydantic keeps the caller's object

    def _record(self, token: str) -> None:
        if self.log is not None:
            self.log.append(("model", token))

    @property
    def _llm_type(self) -> str:
        return "chunked-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        # ChatOpenAI(streaming=True).ainvoke: stream, then one aggregated message.
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    async def _astream(
        self, messages, stop=None, run_manager=None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        tokens = re.findall(r"\s*\S+", self.reply)
        reason = {"finish_reason": self.finish_reason} if self.finish_reason else {}
        for i, token in enumerate(tokens):
            last = self.layout == "last" and i == len(tokens) - 1
            self._record(token)
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=token, response_metadata=reason if last else {})
            )
        if self.layout == "openai":
            yield ChatGenerationChunk(message=AIMessageChunk(content=""), generation_info=reason)
            usage = {
                "input_tokens": 9,
                "output_tokens": len(tokens),
                "total_tokens": 9 + len(tokens),
            }
            yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))


@pytest.mark.parametrize("name", FACTORIES)
async def test_astream_yields_text_as_it_comes_and_joins_to_ainvoke(name):
    factory, kwargs = FACTORIES[name]
    # A summary's first sentence streams as it comes, a later one once judged no repeat.
    reply = "One two three. Four five six seven. Eight nine ten eleven."
    chain = factory(cycling_llm(reply), **kwargs)
    chunks = [c async for c in chain.astream(_input_for(name))]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke(_input_for(name)) == reply


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("layout", ["last", "openai"])
async def test_a_reply_cut_by_length_is_trimmed_to_its_last_sentence(name, layout):
    assert hold_from_chars(max_tokens_for_words(40)) <= len(
        WHOLE
    )  # the end lies in the last stretch
    factory, kwargs = FACTORIES[name]
    model = ChunkedChatModel(reply=CUT_REPLY, finish_reason="length", layout=layout)
    chain = factory(model, **_forty_words(name), **kwargs)
    chunks = [c async for c in chain.astream(_input_for(name))]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke(_input_for(name)) == WHOLE


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("layout", ["last", "openai"])
async def test_a_reply_that_ended_normally_is_not_trimmed(name, layout):
    factory, kwargs = FACTORIES[name]
    model = ChunkedChatModel(reply=CUT_REPLY + "  \n", finish_reason="stop", layout=layout)
    # 55 words: within 1.3 x 43 words, so the summaries' length rule keeps it whole too.
    assert len(CUT_REPLY.split()) == 55
    words = (
        {"max_words": 43, "long_max_words": 43} if name.startswith("auto") else {"max_words": 43}
    )
    chain = factory(model, **words, **kwargs)
    chunks = [c async for c in chain.astream(_input_for(name))]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke(_input_for(name)) == CUT_REPLY


async def test_text_reaches_the_caller_before_the_model_has_finished():
    log: list = []
    model = ChunkedChatModel(reply=CUT_REPLY, finish_reason="length", log=log)
    async for chunk in build_story_chain(model, max_words=40).astream("a fox"):
        log.append(("caller", chunk))
    first_out = log.index(next(e for e in log if e[0] == "caller"))
    last_token = max(i for i, e in enumerate(log) if e[0] == "model")
    assert first_out < last_token
    # Outside the last stretch text goes on a token at a time.
    assert log[1] == ("caller", "The")


def _openai_sse(tokens: list[str], finish_reason: str) -> str:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "smol"}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": t} for t in tokens]
    events = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    usage = {"prompt_tokens": 9, "completion_tokens": len(tokens), "total_tokens": 9 + len(tokens)}
    events.append({**base, "choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


@pytest.mark.parametrize(("finish_reason", "expected"), [("length", WHOLE), ("stop", CUT_REPLY)])
async def test_chat_openai_streaming_reports_the_cut_where_the_finisher_reads_it(
    finish_reason, expected
):
    tokens = re.findall(r"\s*\S+", CUT_REPLY)

    def handler(request: httpx.Request) -> httpx.Response:
        body = _openai_sse(tokens, finish_reason)
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    llm = ChatOpenAI(
        model="smol",
        api_key="not-used",
        base_url="http://model.invalid/v1",
        streaming=True,
        stream_usage=True,
        max_retries=0,
        http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    chain = build_story_chain(llm, max_words=40)
    chunks = [c async for c in chain.astream("a fox")]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke("a fox") == expected


@pytest.mark.parametrize("name", FACTORIES)
def test_chains_have_string_input_and_output_schemas(name):
    factory, kwargs = FACTORIES[name]
    chain = factory(cycling_llm("Done."), **kwargs)
    for schema in (chain.input_schema, chain.output_schema):
        assert schema.model_json_schema()["type"] == "string"
        assert "RunnableLambda" not in schema.model_json_schema()["title"]
