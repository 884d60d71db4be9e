import asyncio
import io

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from lc_async_pipelines import build_story_chain
from lc_async_pipelines.callbacks import (
    MetricsCallbackHandler,
    QueueCallbackHandler,
    TerminalStreamHandler,
)
from lc_async_pipelines.callbacks._base import token_text, usage_of
from tests.unit.fakes import fake_llm


async def test_terminal_handler_tags_lines_with_item():
    out = io.StringIO()
    chain = build_story_chain(fake_llm(["First line.\nSecond line."]))
    await chain.ainvoke(
        "x", {"callbacks": [TerminalStreamHandler(out)], "metadata": {"item_id": "item-7"}}
    )
    assert out.getvalue().splitlines() == ["[item-7] First line.", "[item-7] Second line."]


async def test_terminal_handler_untagged_writes_raw_tokens():
    out = io.StringIO()
    chain = build_story_chain(fake_llm(["Hello there."]))
    await chain.ainvoke("x", {"callbacks": [TerminalStreamHandler(out, tagged=False)]})
    assert out.getvalue() == "Hello there.\n"


async def test_queue_handler_orders_events_per_call():
    queue: asyncio.Queue = asyncio.Queue()
    chain = build_story_chain(fake_llm(["A b c."]))
    await chain.ainvoke(
        "x", {"callbacks": [QueueCallbackHandler(queue)], "metadata": {"item_id": "i1"}}
    )
    kinds = []
    while not queue.empty():
        event = queue.get_nowait()
        assert event.item_id == "i1"
        kinds.append(event.kind)
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"token"}


async def test_metrics_handler_records_ttft_and_latency():
    metrics = MetricsCallbackHandler()
    chain = build_story_chain(fake_llm(["One two three."]))
    await chain.ainvoke("x", {"callbacks": [metrics]})
    [call] = metrics.calls
    assert call.ttft_s is not None and 0 <= call.ttft_s <= call.latency_s
    assert call.error is None


def test_usage_of_sums_generations():
    msg = AIMessage(
        content="x", usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    )
    result = LLMResult(generations=[[ChatGeneration(message=msg)], [ChatGeneration(message=msg)]])
    assert usage_of(result) == {"input_tokens": 6, "output_tokens": 8, "total_tokens": 14}


def test_token_text_accepts_content_blocks():
    assert token_text(["a", {"type": "text", "text": "b"}]) == "ab"
