import asyncio
import io
import re
from collections import defaultdict
from itertools import pairwise
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel, FakeStreamingListLLM
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import tool

from lc_async_pipelines import build_map_reduce_summary_chain, build_story_chain
from lc_async_pipelines.callbacks import (
    MetricsCallbackHandler,
    QueueCallbackHandler,
    StreamEvent,
    TaggedCallbackHandler,
    TerminalStreamHandler,
    token_text,
    usage_of,
)
from lc_async_pipelines.runner import Item, run_items
from tests.unit.fakes import FnChatModel, fake_llm

PROMPT = ChatPromptTemplate.from_messages([("human", "{x}")])
LINE = re.compile(r"^\[(?P<tag>[^\]]+)\] (?P<doc>DOC-\w+) line (?P<n>\d+)\.$")


class EchoModel(BaseChatModel):
    """Streams ``lines`` lines naming the DOC-x marker found in its prompt, a word a token.

    Each token yields to the event loop (after ``delay_s``), so concurrent calls interleave.
    """

    lines: int = 3
    delay_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "echo-fake"

    def _reply(self, messages) -> str:
        found = re.search(r"DOC-\w+", " ".join(str(m.content) for m in messages))
        marker = found.group(0) if found else "DOC-none"
        return "".join(f"{marker} line {i}.\n" for i in range(self.lines))

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._reply(messages)))])

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        for word in re.findall(r"\S+\s*", self._reply(messages)):
            await asyncio.sleep(self.delay_s)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                await run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk


def echo(**kwargs) -> Runnable:
    return EchoModel(**kwargs).bind(stream=True)


def assert_released(*handlers: TaggedCallbackHandler) -> None:
    for h in handlers:
        assert h.tracked_runs == 0 and h._runs == {} and h._roots == {}
        for name in ("_buffers", "_open"):
            assert getattr(h, name, {}) == {}, name


def drain(queue: asyncio.Queue) -> list[StreamEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def calls_by_run(events: list[StreamEvent]) -> dict[UUID, tuple[str, str]]:
    """run_id -> (tag, DOC marker its tokens named), checking every event of a call has one tag."""
    tags: dict[UUID, set[str]] = defaultdict(set)
    text: dict[UUID, str] = defaultdict(str)
    for e in events:
        tags[e.run_id].add(e.tag)
        text[e.run_id] += e.text
    out = {}
    for run_id, seen in tags.items():
        assert len(seen) == 1, seen
        [marker] = set(re.findall(r"DOC-\w+", text[run_id]))
        out[run_id] = (seen.pop(), marker)
    return out


# -- the issue: concurrent calls without the runner ------------------------------------


@pytest.mark.parametrize("extra", [{}, {"metadata": {"user": "u1"}}], ids=["bare", "metadata"])
async def test_terminal_tags_each_abatch_invocation_and_lines_never_mix(extra):
    out = io.StringIO()
    handler = TerminalStreamHandler(out)
    docs = ["DOC-a", "DOC-b", "DOC-c", "DOC-d"]
    chain = PROMPT | echo(lines=4)
    await chain.abatch([{"x": d} for d in docs], {"callbacks": [handler], **extra})

    lines = out.getvalue().splitlines()
    assert len(lines) == 4 * len(docs)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines  # every line whole: one tag, one document, one line number
    doc_of_tag: dict[str, set[str]] = defaultdict(set)
    numbers: dict[str, list[int]] = defaultdict(list)
    for m in parsed:
        doc_of_tag[m["tag"]].add(m["doc"])
        numbers[m["tag"]].append(int(m["n"]))
    # one tag per invocation, in the order the invocations started
    assert {t: d.pop() for t, d in doc_of_tag.items()} == {
        f"call-{i + 1}": d for i, d in enumerate(docs)
    }
    assert all(n == [0, 1, 2, 3] for n in numbers.values())
    # the calls really did run at once: the tags alternate in the output
    tags = [m["tag"] for m in parsed]
    assert sum(a != b for a, b in pairwise(tags)) > len(docs) - 1
    assert_released(handler)


async def test_plain_handler_sees_the_interleaving_the_base_untangles():
    """Why the base exists: concurrent tokens reach a handler mixed together."""

    class Plain(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.runs: list[UUID] = []

        async def on_llm_new_token(self, token, *, run_id, **kwargs) -> None:
            self.runs.append(run_id)

    plain = Plain()
    await (PROMPT | echo()).abatch([{"x": "DOC-a"}, {"x": "DOC-b"}], {"callbacks": [plain]})
    switches = sum(a != b for a, b in pairwise(plain.runs))
    assert switches > 1


async def test_runner_item_id_wins_over_the_invocation_tag():
    out, queue = io.StringIO(), asyncio.Queue()
    term, q = TerminalStreamHandler(out), QueueCallbackHandler(queue)
    chain = PROMPT | echo(lines=2)
    configs: list[RunnableConfig] = [
        {"callbacks": [term, q], "metadata": {"item_id": "item-a"}},
        {"callbacks": [term, q]},  # no item id: gets the counter, which item runs do not use
        {"callbacks": [term, q], "metadata": {"item_id": 7}},
    ]
    await chain.abatch([{"x": "DOC-a"}, {"x": "DOC-b"}, {"x": "DOC-c"}], configs)

    tags = {m["doc"]: m["tag"] for m in map(LINE.match, out.getvalue().splitlines())}
    assert tags == {"DOC-a": "item-a", "DOC-b": "call-1", "DOC-c": "7"}
    events = drain(queue)
    assert {(e.item_id, e.tag) for e in events} == {
        ("item-a", "item-a"),
        (None, "call-1"),
        ("7", "7"),
    }
    assert_released(term, q)


async def test_runner_sets_the_item_id_the_tag_uses():
    queue: asyncio.Queue = asyncio.Queue()
    handler = QueueCallbackHandler(queue)
    chain = PROMPT | echo()
    items = [Item(f"id-{d}", i + 1, {"x": f"DOC-{d}"}) for i, d in enumerate("abc")]
    records = [r async for r in run_items(chain, items, config={"callbacks": [handler]})]
    assert sorted(r.id for r in records) == ["id-a", "id-b", "id-c"]
    assert all(r.error is None for r in records)
    calls = calls_by_run(drain(queue))
    assert sorted(calls.values()) == [("id-a", "DOC-a"), ("id-b", "DOC-b"), ("id-c", "DOC-c")]
    assert_released(handler)


# -- nested calls share their invocation's tag -------------------------------------------


@pytest.mark.parametrize("pass_config", [True, False], ids=["config", "context"])
async def test_inner_abatch_calls_share_the_outer_invocation_tag(pass_config):
    queue: asyncio.Queue = asyncio.Queue()
    handler = QueueCallbackHandler(queue)
    inner = PROMPT | echo()

    async def fan_out(doc: str, config: RunnableConfig) -> list[str]:
        parts = [{"x": f"{doc} part {i}"} for i in range(3)]
        first = await (inner.abatch(parts, config) if pass_config else inner.abatch(parts))
        combined = await inner.ainvoke({"x": f"{doc} combine"}, config if pass_config else None)
        return [*first, combined]

    docs = ["DOC-a", "DOC-b", "DOC-c"]
    await RunnableLambda(fan_out).abatch(docs, {"callbacks": [handler]})

    calls = calls_by_run(drain(queue))
    assert len(calls) == 4 * len(docs)
    tags_of: dict[str, set[str]] = defaultdict(set)
    for tag, marker in calls.values():
        tags_of[marker].add(tag)
    assert all(len(t) == 1 for t in tags_of.values()), tags_of
    assert {m: t.pop() for m, t in tags_of.items()} == {
        "DOC-a": "call-1",
        "DOC-b": "call-2",
        "DOC-c": "call-3",
    }
    assert_released(handler)


async def test_map_reduce_summary_calls_share_their_document_tag():
    metrics, queue = MetricsCallbackHandler(), asyncio.Queue()
    q = QueueCallbackHandler(queue)
    chain = build_map_reduce_summary_chain(echo(lines=1), chunk_tokens=40, map_words=10)
    docs = [
        "\n\n".join(f"DOC-{d} paragraph {i}. " + "Some filler words here. " * 4 for i in range(4))
        for d in "xy"
    ]
    await chain.abatch(docs, {"callbacks": [metrics, q], "max_concurrency": 4})

    calls = calls_by_run(drain(queue))
    assert len(calls) >= 2 * 3  # at least two chunks and a combine per document
    markers = {tag: set() for tag, _ in calls.values()}
    for tag, marker in calls.values():
        markers[tag].add(marker)
    assert markers == {"call-1": {"DOC-x"}, "call-2": {"DOC-y"}}
    assert {c.run_id: c.tag for c in metrics.calls} == {r: t for r, (t, _) in calls.items()}
    assert all(c.item_id is None for c in metrics.calls)
    assert_released(metrics, q)


async def test_story_with_outline_two_calls_one_tag():
    out = io.StringIO()
    handler = TerminalStreamHandler(out)
    chain = build_story_chain(
        fake_llm(["Outline one.", "Story one.", "Outline two.", "Story two."]), outline=True
    )
    await chain.ainvoke("x", {"callbacks": [handler]})
    await chain.ainvoke("y", {"callbacks": [handler]})
    assert out.getvalue().splitlines() == [
        "[call-1] Outline one.",
        "[call-1] Story one.",
        "[call-2] Outline two.",
        "[call-2] Story two.",
    ]
    assert_released(handler)


async def test_model_called_inside_a_tool_keeps_the_invocation_tag():
    queue: asyncio.Queue = asyncio.Queue()
    handler = QueueCallbackHandler(queue)
    llm = echo()

    @tool
    async def ask(question: str) -> str:
        """Ask the model."""
        message = await llm.ainvoke(question)
        return str(message.content)

    async def agent(doc: str) -> str:
        direct = await llm.ainvoke(f"{doc} direct")
        return str(direct.content) + await ask.ainvoke({"question": f"{doc} via tool"})

    await RunnableLambda(agent).abatch(["DOC-a", "DOC-b"], {"callbacks": [handler]})
    calls = calls_by_run(drain(queue))
    assert sorted(calls.values()) == [
        ("call-1", "DOC-a"),
        ("call-1", "DOC-a"),
        ("call-2", "DOC-b"),
        ("call-2", "DOC-b"),
    ]
    assert_released(handler)


# -- lookups and hooks ---------------------------------------------------------------------


class Recorder(TaggedCallbackHandler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str | None, bool]] = []

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        root = self.root_run_id(run_id)
        self.seen.append(("start", tag, self.item(run_id), root is not None and root != run_id))
        assert self.tag(run_id) == tag

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        self.seen.append(("token", tag, text, self.tag(run_id) == tag))

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        self.seen.append(("end", tag, response.generations[0][0].text, self.tag(run_id) == tag))

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        self.seen.append(("error", tag, type(error).__name__, self.tag(run_id) == tag))


async def test_hooks_get_the_tag_and_lookups_answer_during_the_call():
    rec = Recorder()
    await (PROMPT | echo(lines=1)).ainvoke({"x": "DOC-a"}, {"callbacks": [rec]})
    # LangChain 1.7 ends a stream with an empty token
    assert [s for s in rec.seen if s[:3] != ("token", "call-1", "")] == [
        ("start", "call-1", None, True),
        ("token", "call-1", "DOC-a ", True),
        ("token", "call-1", "line ", True),
        ("token", "call-1", "0.\n", True),
        ("end", "call-1", "DOC-a line 0.\n", True),
    ]
    assert rec.tag(UUID(int=1)) is None and rec.item(UUID(int=1)) is None
    assert not rec.ignore_chain and not rec.ignore_chat_model and not rec.ignore_llm
    assert_released(rec)


async def test_a_model_invoked_alone_is_its_own_invocation():
    rec = Recorder()
    await echo(lines=1).ainvoke("DOC-a", {"callbacks": [rec]})
    await echo(lines=1).ainvoke("DOC-b", {"callbacks": [rec]})
    assert [s[:2] for s in rec.seen if s[0] == "start"] == [
        ("start", "call-1"),
        ("start", "call-2"),
    ]
    assert_released(rec)


async def test_text_completion_llm_calls_are_tagged_too():
    rec = Recorder()
    llm = FakeStreamingListLLM(responses=["one", "two"])
    await (RunnableLambda(lambda x: x) | llm).abatch(["a", "b"], {"callbacks": [rec]})
    starts = sorted(s[1] for s in rec.seen if s[0] == "start")
    assert starts == ["call-1", "call-2"]
    assert_released(rec)


async def test_handler_attached_below_the_top_still_separates_concurrent_invocations():
    rec = Recorder()
    chain = PROMPT | EchoModel(lines=1).bind(stream=True).with_config(callbacks=[rec])
    await chain.abatch([{"x": "DOC-a"}, {"x": "DOC-b"}])
    ends = {s[2]: s[1] for s in rec.seen if s[0] == "end"}
    assert set(ends) == {"DOC-a line 0.\n", "DOC-b line 0.\n"}
    assert len(set(ends.values())) == 2
    assert_released(rec)


# -- bookkeeping is freed however runs end ---------------------------------------------------


async def test_failed_call_is_reported_and_released():
    async def boom(messages, **kwargs):
        raise ValueError("nope")

    out, metrics, queue = io.StringIO(), MetricsCallbackHandler(), asyncio.Queue()
    handlers = [TerminalStreamHandler(out), metrics, QueueCallbackHandler(queue)]
    with pytest.raises(ValueError):
        await (PROMPT | FnChatModel(fn=boom)).ainvoke({"x": "a"}, {"callbacks": handlers})
    assert out.getvalue() == "[call-1]  [error: ValueError]\n"
    [call] = metrics.calls
    assert call.error == "ValueError: nope" and call.tag == "call-1"
    assert [(e.kind, e.tag, e.text) for e in drain(queue)] == [
        ("start", "call-1", ""),
        ("error", "call-1", "ValueError: nope"),
    ]
    assert_released(*handlers)


async def test_cancelled_call_is_closed_when_its_invocation_ends():
    """LangChain reports nothing for a model call cancelled mid-stream; the base closes it."""
    out, metrics = io.StringIO(), MetricsCallbackHandler()
    chain = PROMPT | echo(lines=3, delay_s=0.02)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.09):
            await chain.ainvoke(
                {"x": "DOC-a"}, {"callbacks": [TerminalStreamHandler(out), metrics]}
            )
    lines = out.getvalue().splitlines()
    assert lines[0] == "[call-1] DOC-a line 0."
    assert lines[-1].startswith("[call-1] ") and lines[-1].endswith(" [error: CancelledError]")
    [call] = metrics.calls
    assert call.error is not None and call.error.startswith("CancelledError")
    assert call.ttft_s is not None
    assert_released(metrics)


async def test_abandoned_astream_is_released():
    handler = QueueCallbackHandler(asyncio.Queue())
    stream = (PROMPT | echo(lines=5)).astream({"x": "DOC-a"}, {"callbacks": [handler]})
    async for _ in stream:
        break
    await stream.aclose()
    for _ in range(100):
        if handler.tracked_runs == 0:
            break
        await asyncio.sleep(0.01)
    assert_released(handler)


async def test_a_hook_that_raises_still_releases_the_run():
    class Broken(TaggedCallbackHandler):
        async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
            raise RuntimeError("hook bug")

    broken = Broken()
    result = await (PROMPT | echo(lines=1)).ainvoke({"x": "DOC-a"}, {"callbacks": [broken]})
    assert result.content == "DOC-a line 0.\n"  # LangChain logs handler errors, the call goes on
    assert_released(broken)


async def test_an_error_hook_that_raises_while_closing_cancelled_calls_releases_them_all():
    class Broken(TaggedCallbackHandler):
        closed = 0

        async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
            Broken.closed += 1
            raise RuntimeError("hook bug")

    broken = Broken()
    llm = echo(lines=3, delay_s=0.05)

    async def two_calls(doc: str) -> list:
        return await asyncio.gather(llm.ainvoke(f"{doc} 1"), llm.ainvoke(f"{doc} 2"))

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await RunnableLambda(two_calls).ainvoke("DOC-a", {"callbacks": [broken]})
    assert Broken.closed >= 1
    assert_released(broken)


async def test_a_shared_handler_does_not_grow_over_many_invocations():
    handler = TerminalStreamHandler(io.StringIO())
    chain = PROMPT | echo(lines=1)
    for _ in range(5):
        await chain.abatch([{"x": f"DOC-{i}"} for i in range(20)], {"callbacks": [handler]})
        assert_released(handler)
    assert handler.stream.getvalue().splitlines()[-1].startswith("[call-")


# -- the handlers' existing behaviour ---------------------------------------------------------


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
        assert event.item_id == "i1" and event.tag == "i1"
        kinds.append(event.kind)
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"token"}


async def test_metrics_handler_records_ttft_and_latency():
    metrics = MetricsCallbackHandler()
    chain = build_story_chain(fake_llm(["One two three."]))
    await chain.ainvoke("x", {"callbacks": [metrics]})
    [call] = metrics.calls
    assert call.ttft_s is not None and 0 <= call.ttft_s <= call.latency_s
    assert call.error is None and call.item_id is None and call.tag == "call-1"
    assert_released(metrics)


def test_usage_of_sums_generations():
    msg = AIMessage(
        content="x", usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    )
    result = LLMResult(generations=[[ChatGeneration(message=msg)], [ChatGeneration(message=msg)]])
    assert usage_of(result) == {"input_tokens": 6, "output_tokens": 8, "total_tokens": 14}


def test_token_text_accepts_content_blocks():
    assert token_text(["a", {"type": "text", "text": "b"}]) == "ab"
