"""The summaries' length rule: a target of N words met within ±30%, streamed as it comes."""

import json
import random
import socket
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from benchmarks import quality
from lc_async_pipelines import (
    build_auto_summary_chain,
    build_map_reduce_summary_chain,
    build_summary_chain,
)
from lc_async_pipelines._finish import LengthFinisher, finish_to_length, fit_to_length
from lc_async_pipelines._text import max_tokens_for_target, word_range
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.prompts import COMBINE_PROMPT, MAP_PROMPT, SUMMARY_PROMPT
from tests.unit.fakes import FnChatModel
from tests.unit.pipelines.test_chains import ChunkedChatModel, cycling_llm

# Sentence ends after words 10, 20, 33 and 47, then more: 55 words.
S1 = "The fox ran far across the quiet hills at dawn."
S2 = "It found a hidden river under an old stone bridge."
S3 = "The water was cold and clear, and it drank for a long time."
S4 = "Then it rested in the shade of a tall oak until the sun was high."
TAIL = "Far away, a sound came from the"
LONG = " ".join([S1, S2, S3, S4, TAIL])
LONG_DOC = "\n\n".join("Sentence here. " * 40 for _ in range(6))


def words(text: str) -> int:
    return len(text.split())


def test_word_range_is_thirty_percent_either_way_in_whole_words():
    assert word_range(10) == (7, 13)
    assert word_range(40) == (28, 52)
    assert word_range(48) == (34, 62)
    assert word_range(150) == (105, 195)
    with pytest.raises(ConfigurationError):
        word_range(0)


def test_max_tokens_leave_room_past_the_upper_end():
    # 1.3N words at the estimate of 1.6 tokens a word, and a sentence's end.
    assert max_tokens_for_target(40) == 84 + 16  # ceil(52 * 1.6) + 16
    assert max_tokens_for_target(150) > 195 * 1.6


def test_an_overlong_reply_ends_at_its_last_sentence_end_in_range():
    assert words(LONG) == 55
    # N = 30: 21..39 words; the ends after 20 and 47 words lie outside, 33 inside.
    assert fit_to_length(LONG, 30, cut=False) == " ".join([S1, S2, S3])
    # N = 40: 28..52 words; the last end inside is after 47 words.
    assert fit_to_length(LONG, 40, cut=False) == " ".join([S1, S2, S3, S4])


def test_an_overlong_reply_without_a_sentence_end_in_range_is_cut_at_a_word():
    # N = 6: 5..7 words, and the first sentence end is after 10.
    out = fit_to_length(LONG, 6, cut=False)
    assert out == "The fox ran far across the quiet..."
    assert words(out) == 7
    # A dangling comma goes before the "...".
    assert fit_to_length("One two three, four five six seven", 3, cut=False) == "One two three..."


def test_in_range_and_short_replies_are_untouched():
    assert fit_to_length("  " + LONG + "\n", 50, cut=False) == LONG  # 55 <= 65
    assert fit_to_length(LONG, 43, cut=False) == LONG  # 55 <= floor(55.9)
    assert fit_to_length(S1, 40, cut=False) == S1  # short: kept as the model ended it


def test_a_reply_cut_by_max_tokens_ends_at_a_sentence_end_in_range_or_is_kept():
    assert fit_to_length(LONG, 50, cut=True) == " ".join([S1, S2, S3, S4])
    # No end in 49..91 words: a cut reply of at most 91 words is kept whole.
    assert fit_to_length(LONG, 70, cut=True) == LONG


@pytest.mark.parametrize("seed", range(300))
def test_streamed_pieces_join_to_the_fitted_reply_and_never_pass_the_upper_end(seed):
    rng = random.Random(seed)
    vocab = ["Go", "on", "3.5", "it.", 'said."', "ok!", "why?", "well\u2026", "(yes.)", "x"]
    vocab += ["a,", "b;", "\u2014", "c:"]
    spaces = [" ", " ", " ", "\n\n", "  "]
    text = rng.choice(["", " ", "\n"]) + "".join(
        rng.choice(vocab) + rng.choice(spaces) for _ in range(rng.randint(0, 60))
    )
    text = text[: rng.randint(0, len(text))]  # cut anywhere, mid-word included
    target = rng.randint(1, 40)
    reason = rng.choice(["length", "stop"])
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 30))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]

    expected = fit_to_length(text, target, cut=reason == "length")
    assert words(expected) <= word_range(target)[1]
    finisher = LengthFinisher(target, max_tokens=1000)
    stop = AIMessageChunk(content="", response_metadata={"finish_reason": reason})
    out = [finisher.feed(p) for p in [*pieces, stop]]
    assert "".join([*out, finisher.close()]) == expected


def test_text_streams_until_the_range_then_waits_for_a_sentence_end():
    finisher = LengthFinisher(10, max_tokens=1000)  # 7..13 words
    assert finisher.feed("One two three four five ") == "One two three four five"
    assert finisher.feed("six seven. Eight") == " six seven."  # an end at 7 words
    assert finisher.feed(" nine ten") == ""  # may still be dropped
    assert finisher.feed(" eleven twelve thirteen fourteen") == ""  # past 13 words: decided
    assert finisher.close() == ""


async def test_the_step_streams_and_invokes_alike():
    step = finish_to_length(30, 1000)
    chunks = [c async for c in step.astream(AIMessage(content=LONG))]
    assert "".join(chunks) == await step.ainvoke(AIMessage(content=LONG)) == " ".join([S1, S2, S3])
    assert await step.ainvoke(AIMessage(content="")) == ""


# --- the chains ------------------------------------------------------------------------------

FACTORIES: dict[str, tuple[Any, dict[str, Any], str]] = {
    "summary": (build_summary_chain, {"max_words": 30}, "a short document"),
    "map_reduce": (
        build_map_reduce_summary_chain,
        {"max_words": 30, "chunk_tokens": 200},
        LONG_DOC,
    ),
    "auto_stuff": (build_auto_summary_chain, {"max_words": 30}, "a short document"),
    "auto_map_reduce": (
        build_auto_summary_chain,
        {"long_max_words": 30, "chunk_tokens": 200, "stuff_max_tokens": 300},
        LONG_DOC,
    ),
}


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("reason", ["stop", "length"])
async def test_summaries_are_cut_to_the_range_at_a_sentence_end(name, reason):
    factory, kwargs, doc = FACTORIES[name]
    chain = factory(ChunkedChatModel(reply=LONG, finish_reason=reason), **kwargs)
    chunks = [c async for c in chain.astream(doc)]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke(doc) == " ".join([S1, S2, S3])
    assert 21 <= words("".join(chunks)) <= 39


@pytest.mark.parametrize("name", FACTORIES)
async def test_a_summary_in_range_is_untouched(name):
    factory, kwargs, doc = FACTORIES[name]
    kwargs = {k: (50 if k.endswith("max_words") else v) for k, v in kwargs.items()}
    chain = factory(cycling_llm(LONG), **kwargs)
    chunks = [c async for c in chain.astream(doc)]
    assert len(chunks) > 1
    assert "".join(chunks) == await chain.ainvoke(doc) == LONG


async def test_map_summaries_are_held_to_map_words_too():
    seen = []

    async def model(messages, **_):
        text = messages[-1].content
        seen.append(text)
        return AIMessage(content=LONG, response_metadata={"finish_reason": "stop"})

    chain = build_map_reduce_summary_chain(
        FnChatModel(fn=model), max_words=30, map_words=14, chunk_tokens=200
    )
    assert await chain.ainvoke(LONG_DOC) == " ".join([S1, S2, S3])
    # Each chunk summary reached the combine prompt cut to 10..18 words: S1 only.
    assert seen[-1].count(S1) == len(seen) - 1 and S2 not in seen[-1]


async def test_the_model_is_asked_for_about_n_words_with_room_past_the_range():
    calls = []

    async def model(messages, **kwargs):
        calls.append((messages[-1].content, kwargs.get("max_tokens")))
        return AIMessage(content="Done.")

    await build_summary_chain(FnChatModel(fn=model), max_words=48).ainvoke("a document")
    prompt, max_tokens = calls[0]
    assert "about 48 words" in prompt
    assert max_tokens == max_tokens_for_target(48) and max_tokens >= 62 * 1.6  # 1.3N words


def test_prompts_ask_for_about_n_words():
    for prompt in (SUMMARY_PROMPT, MAP_PROMPT):
        text = prompt.invoke({"text": "x", "max_words": 77}).to_messages()[-1].content
        assert "about 77 words" in text and "at most" not in text
    text = COMBINE_PROMPT.invoke({"summaries": "x", "max_words": 77}).to_messages()[-1].content
    assert "about 77 words" in text


def test_a_target_below_one_word_is_refused_when_the_chain_is_built():
    with pytest.raises(ConfigurationError):
        build_summary_chain(cycling_llm("x"), max_words=0)
    with pytest.raises(ConfigurationError):
        build_map_reduce_summary_chain(cycling_llm("x"), map_words=0)


# --- benchmarks/quality.py helpers -----------------------------------------------------------


def test_distinct_3gram_ratio_flags_a_loop():
    assert quality.distinct_3gram_ratio("a b c d e f") == 1.0
    assert quality.distinct_3gram_ratio("one two") == 1.0
    loop = "the cat sat on the mat. " * 10
    assert quality.distinct_3gram_ratio(loop) < quality.LOOP_THRESHOLD


def test_length_helpers():
    assert quality.lead_words("  one two\nthree  four ", 3) == "one two three"
    assert quality.within_tolerance(7, 10) and quality.within_tolerance(13, 10)
    assert not quality.within_tolerance(6, 10) and not quality.within_tolerance(14, 10)
    assert [quality.within_tolerance(w, 48) for w in (33, 34, 62, 63)] == [
        False, True, True, False,
    ]  # fmt: skip


def test_score_set_takes_the_best_reference_and_counts_loops(monkeypatch):
    # Scoring touches no network (the Porter stemmer is code, not an nltk download).
    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    docs = [
        quality.Doc("a", "the cat sat on the mat all day", ["the cat sat on the mat", "dogs bark"]),
        quality.Doc("b", "a storm hit the coast at dawn", ["a storm hit the coast"]),
    ]
    outcomes = [
        quality.Outcome(
            "the cats sat on a mat",
            {"kind": "news", "off_task_retries": 1, "repeats_dropped": 2, "lengthened": 1},
        ),
        quality.Outcome("The text is about storm storm storm storm storm storm storm", {}),
    ]
    row = quality.score_set("model", outcomes, docs, 6, quality.make_scorer())
    first = row["items"][0]
    assert first["rouge1"] == pytest.approx(5 / 6, abs=1e-4)  # stemmed: cats -> cat; best reference
    assert row["loops"] == 1 and row["n"] == 2
    assert row["median_words"] == 8.5 and row["within_30pct"] == 0.5
    # lead-N at the summaries' median length (8 words): the first 8 words of each document
    assert row["lead_words"] == 8
    assert row["lead_rouge1"] == pytest.approx((12 / 14 + 10 / 12) / 2, abs=1e-4)
    # the second opens with text about the text; its kind is guessed when not noted
    assert row["off_task"] == 1 and row["off_task_retries"] == 1 and row["lengthened"] == 1
    assert row["kinds"] == {"news": 1, "document": 1}
    table = quality.markdown_table([row])
    assert "| model | auto (news 1, document 1) | 2 |" in table and "| 1 (1) | 1 (2) |" in table


def test_the_figures_are_written_as_json_with_their_arguments(tmp_path):
    out = tmp_path / "sub" / "quality.json"
    quality.write_json({"args": {"output": out}, "rows": [{"rouge1": 0.5}]}, out)
    assert json.loads(out.read_text()) == {"args": {"output": str(out)}, "rows": [{"rouge1": 0.5}]}
