"""Each model call is retried on its own; records say why each attempt failed; secrets never reach them."""

import httpx
import openai
from langchain_core.messages import AIMessage

from lc_async_pipelines import build_map_reduce_summary_chain
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    RunSummary,
    run_items,
    with_budget,
)
from tests.unit.fakes import FnChatModel

FAST = RetryPolicy(max_retries=3, initial=0.001, max_wait=0.002, jitter=0.001)


def status_error(status: int, body: str = "boom", headers: dict | None = None):
    request = httpx.Request("POST", "http://model/v1/chat/completions")
    response = httpx.Response(status, request=request, headers=headers or {}, text=body)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError}.get(
        status, openai.APIStatusError
    )
    return cls(body, response=response, body=None)


def long_document(chunks: int) -> str:
    return "\n\n".join(f"Part {i}. " + f"A sentence about part {i}. " * 40 for i in range(chunks))


async def test_a_failing_chunk_is_retried_alone_not_the_whole_item():
    calls: list[str] = []
    failed_once: set[str] = set()

    async def model(messages, **_):
        text = messages[-1].content
        calls.append(text)
        if "Part 2." in text and text not in failed_once:
            failed_once.add(text)
            raise status_error(500)
        return AIMessage(content="A summary.")

    llm = with_budget(FnChatModel(fn=model), RateBudget(), retry=FAST)
    # "A summary." is within 2 words ±30%: no call to lengthen it
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=300, map_words=2, max_words=2)
    [record] = [
        r
        async for r in run_items(chain, [Item("doc", 1, long_document(4))], RunOptions(retry=FAST))
    ]
    assert record.ok
    maps = [c for c in calls if c.startswith("This is one part")]
    # every chunk summarized once, the failed one twice, and nothing else repeated
    assert len(maps) == len(set(maps)) + 1
    assert record.attempts == 1
    [entry] = record.history
    assert entry["stage"] == "call" and entry["error"] == "InternalServerError"
    assert entry["status"] == 500 and entry["wait_s"] is not None


async def test_a_call_that_spends_its_retries_fails_the_item_without_rerunning_it():
    calls = []

    async def model(messages, **_):
        calls.append(1)
        raise status_error(429, headers={"retry-after-ms": "1"})

    llm = with_budget(FnChatModel(fn=model), RateBudget(cooldown_s=0.001), retry=FAST)
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=300)
    [record] = [
        r async for r in run_items(chain, [Item("doc", 1, "Short text.")], RunOptions(retry=FAST))
    ]
    assert not record.ok and record.error["type"] == "RateLimitError"
    assert len(calls) == FAST.max_retries + 1  # the item was not retried on top
    assert [e["status"] for e in record.history] == [429] * 4
    assert record.throttled == 4
    assert record.history[-1]["wait_s"] is None  # no wait after the last attempt
    summary = RunSummary()
    summary.add(record)
    totals = summary.as_dict()
    assert totals["attempt_errors"] == {"RateLimitError 429": 4}
    assert totals["failed_by_class"] == {"RateLimitError": 1}


async def test_endpoint_error_text_is_scrubbed_before_it_reaches_a_record():
    from lc_async_pipelines._scrub import register_secret

    register_secret("sk-configured-key-0001")

    async def model(messages, **_):
        raise status_error(
            400,
            body='{"echo": {"Authorization": "Bearer sk-configured-key-0001", "x": "sk-other-abcdefghijkl"}}',
        )

    llm = with_budget(FnChatModel(fn=model), RateBudget(), retry=FAST)
    chain = build_map_reduce_summary_chain(llm)
    [record] = [r async for r in run_items(chain, [Item("d", 1, "Text.")], RunOptions(retry=FAST))]
    text = str(record.to_dict())
    assert "sk-configured-key-0001" not in text and "sk-other-abcdefghijkl" not in text
    assert "[redacted]" in record.error["message"]
