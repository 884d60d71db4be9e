"""Best-of-k summaries: every candidate is written, the one most faithful to its source is kept."""

import asyncio

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from lc_async_pipelines import build_auto_summary_chain, build_summary_chain
from lc_async_pipelines.best_of import best_of, candidate_score, faithfulness
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.prompts.summary import NEWS_PROMPTS
from lc_async_pipelines.runner.notes import ItemNotes
from lc_async_pipelines.summary import CANDIDATE_TEMPERATURE, MAX_CANDIDATES, NEWS_TEMPERATURE
from tests.unit.fakes import FnChatModel

NEWS = (
    "The council voted on Tuesday to build a bridge over the Wend, officials said. "
    "The bridge will cost 4 million pounds and open in 2027, the mayor said."
)
FAITHFUL = "The council voted on Tuesday to build a bridge over the Wend."
MADE_UP = "A giant dragon attacked the town hall and ate the mayor's lunch."


def test_faithfulness_is_the_share_of_the_summary_found_in_order_in_the_source():
    assert faithfulness(FAITHFUL, NEWS) == 1.0
    assert faithfulness(MADE_UP, NEWS) < 0.5
    assert faithfulness("", NEWS) == 0.0


def by_wording(replies):
    """A model answering each news wording with its own reply; the calls' options kept."""
    seen = []

    async def fn(messages, **kwargs):
        asked = messages[-1].content
        index = next(i for i, p in enumerate(NEWS_PROMPTS) if asked.endswith(ask_of(p)))
        seen.append((index, kwargs))
        return AIMessage(content=replies[index], response_metadata={"finish_reason": "stop"})

    return FnChatModel(fn=fn), seen


def ask_of(prompt):
    return prompt.messages[-1].prompt.template.split("\n\n")[-1].format(max_words=12)


async def test_the_candidate_closest_to_the_article_is_kept_and_noted():
    model, seen = by_wording([MADE_UP, FAITHFUL, MADE_UP, MADE_UP, MADE_UP])
    chain = build_summary_chain(model, max_words=12, kind="news", candidates=3)
    notes = ItemNotes()
    summary = await chain.ainvoke(NEWS, {"callbacks": [notes]})
    assert summary == FAITHFUL
    assert sorted(i for i, _ in seen) == [0, 1, 2]  # one call per wording
    assert all(kwargs["temperature"] == NEWS_TEMPERATURE for _, kwargs in seen)
    assert notes.notes["candidates"] == 3 and notes.notes["candidate_chosen"] == 1


async def test_past_the_wordings_candidates_are_sampled_from_the_first():
    wordings = len(NEWS_PROMPTS)
    model, seen = by_wording([FAITHFUL] * wordings)
    chain = build_summary_chain(model, max_words=12, kind="news", candidates=wordings + 2)
    await chain.ainvoke(NEWS)
    assert sorted(i for i, _ in seen) == [0, 0, 0, *range(1, wordings)]
    sampled = [kw["temperature"] for i, kw in seen if kw["temperature"] == CANDIDATE_TEMPERATURE]
    assert len(sampled) == 2


async def test_one_candidate_makes_one_call_and_notes_nothing():
    model, seen = by_wording([FAITHFUL] * len(NEWS_PROMPTS))
    notes = ItemNotes()
    await build_summary_chain(model, max_words=12, kind="news").ainvoke(
        NEWS, {"callbacks": [notes]}
    )
    assert len(seen) == 1 and "candidates" not in notes.notes


async def test_a_failed_candidate_is_left_out_and_all_failing_fails_the_item():
    def step(reply):
        async def run(_variables):
            if isinstance(reply, Exception):
                raise reply
            return reply

        return RunnableLambda(run)

    notes = ItemNotes()
    chosen = best_of([step(RuntimeError("down")), step(FAITHFUL)])
    assert await chosen.ainvoke({"text": NEWS}, {"callbacks": [notes]}) == FAITHFUL
    assert notes.notes["candidates_failed"] == 1
    with pytest.raises(RuntimeError, match="first"):
        await best_of([step(RuntimeError("first")), step(RuntimeError("second"))]).ainvoke(
            {"text": NEWS}
        )


async def test_candidates_run_at_once():
    live = peak = 0

    async def fn(messages, **kwargs):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1
        return AIMessage(content=FAITHFUL, response_metadata={"finish_reason": "stop"})

    chain = build_summary_chain(FnChatModel(fn=fn), max_words=12, kind="news", candidates=3)
    await chain.ainvoke(NEWS)
    assert peak == 3


@pytest.mark.parametrize("candidates", [0, MAX_CANDIDATES + 1, 1.5, True, "3"])
def test_candidates_out_of_range_are_a_configuration_error(candidates):
    model, _ = by_wording([FAITHFUL] * len(NEWS_PROMPTS))
    with pytest.raises(ConfigurationError, match="candidates"):
        build_summary_chain(model, kind="news", candidates=candidates)
    with pytest.raises(ConfigurationError, match="candidates"):
        build_auto_summary_chain(model, candidates=candidates)


def test_best_of_needs_a_step():
    with pytest.raises(ValueError, match="at least one"):
        best_of([])


def test_the_score_adds_agreement_with_the_other_candidates_to_faithfulness():
    assert candidate_score(FAITHFUL, [], NEWS) == faithfulness(FAITHFUL, NEWS)
    assert candidate_score(FAITHFUL, [FAITHFUL, FAITHFUL], NEWS) == pytest.approx(2.0)
    # what two candidates say beats the one most faithful alone
    alone = "The mayor said."
    agreed = "The council voted to build a bridge, and a dragon said so."
    assert faithfulness(alone, NEWS) > faithfulness(agreed, NEWS)
    assert candidate_score(agreed, [alone, agreed], NEWS) > candidate_score(
        alone, [agreed, agreed], NEWS
    )
