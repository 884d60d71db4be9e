import asyncio

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

from lc_async_pipelines import build_story_chain
from lc_async_pipelines.runner import Item, RateBudget, SQLiteCache, run_items, with_budget
from lc_async_pipelines.runner._attach import update_chat_models
from tests.unit.fakes import FnChatModel, cycling_llm

LLM_STRING = '{"kwargs": {"openai_api_base": "http://127.0.0.1:%d/v1"}}---[]'


def test_entries_survive_reopening_and_ignore_the_loopback_port(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = SQLiteCache(path)
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    reply = ChatGeneration(message=AIMessage(content="Cached.", usage_metadata=usage))
    first.update("prompt", LLM_STRING % 40001, [reply])
    first.close()

    again = SQLiteCache(path)
    [hit] = again.lookup("prompt", LLM_STRING % 40002)
    assert hit.message.content == "Cached."
    assert hit.message.usage_metadata["total_tokens"] == 5
    assert again.lookup("other prompt", LLM_STRING % 40002) is None
    assert again.lookup("prompt", LLM_STRING.replace("127.0.0.1", "10.0.0.1") % 1) is None
    assert (again.hits, again.misses) == (1, 2)


def test_an_unreadable_entry_is_a_miss(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache._db.execute("INSERT INTO llm_cache VALUES ('llm', 'p', 0, '{not json')")
    assert cache.lookup("p", "llm") is None


async def test_cache_hits_skip_the_budget_and_the_model(tmp_path):
    calls = []

    async def model(messages, **_):
        calls.append(messages[-1].content)
        return AIMessage(content=f"Story {len(calls)}.")

    cache = SQLiteCache(tmp_path / "cache.sqlite")
    budget = RateBudget(rpm=600, max_in_flight=2)
    llm = with_budget(update_chat_models(FnChatModel(fn=model), cache=cache), budget)
    chain = build_story_chain(llm, max_words=40)
    items = [Item(f"i{n}", n, f"topic {n % 3}") for n in range(6)]
    first = [r async for r in run_items(chain, items[:3])]
    # Same inputs again under other ids: every call is identical to a cached one.
    second = [r async for r in run_items(chain, [Item(f"x{i.id}", i.line, i.input) for i in items])]
    assert len(calls) == 3
    assert budget.requests_sent == 3
    assert cache.hits == 6
    outputs = {r.input: r.output for r in first}
    assert all(r.ok and r.output == outputs[r.input] for r in second)


async def test_a_streamed_reply_is_cached(tmp_path):
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    llm = update_chat_models(cycling_llm("Streamed once. Then cached."), cache=cache)
    chain = build_story_chain(with_budget(llm, RateBudget()), max_words=40)
    first, _ = await asyncio.gather(chain.ainvoke("t"), chain.ainvoke("u"))
    assert len(cache) == 2
    assert await chain.ainvoke("t") == first == "Streamed once. Then cached."
    assert cache.hits == 1


def test_a_full_disk_skips_the_cache_and_never_fails_the_call(tmp_path, caplog):
    """Issue 22, point 9: 'database or disk is full' failed items whose answer was paid for."""
    cache = SQLiteCache(tmp_path / "c.sqlite")
    (pages,) = cache._db.execute("PRAGMA page_count").fetchone()
    cache._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL at the next page
    big = ChatGeneration(message=AIMessage(content="x" * 100_000))
    with caplog.at_level("WARNING"):
        cache.update("p1", "llm", [big])
        cache.update("p2", "llm", [big])
    assert cache.lookup("p1", "llm") is None and len(cache) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot store answers (database or disk is full)" in warnings[0]
