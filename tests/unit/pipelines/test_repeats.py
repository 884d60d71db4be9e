"""Repeated sentences are left out of a summary: the first telling is kept, the loop dropped."""

import random

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from lc_async_pipelines import build_map_reduce_summary_chain, build_summary_chain
from lc_async_pipelines._finish import LengthFinisher, fit_to_length
from lc_async_pipelines._repeats import RepeatFilter, drop_repeats
from lc_async_pipelines.runner.notes import ItemNotes
from tests.unit.fakes import FnChatModel

# Two of the embedded model's story summaries (issue 23): a paragraph written
# again under another title with a few words changed, and a sentence written twice.
TITLED = (
    "The Aurora Star-Lens - A tale of fate's cruel hand crafted into a fantastical reality "
    "that has forever changed the course of human history. This is the story of a ship lost "
    "to time by one of its own crew on a journey through space."
)
TITLED_AGAIN = (
    "The Ghost Ship - A tale of fate's cruel hand crafted into a fantastical reality that has "
    "forever changed human history. This is the story of a ship lost to time by one of its "
    "own crew on a journey through space."
)
SCENE = (
    "In this scene, the story begins when Yith makes a request that he would not interfere "
    "with the diplomatic protocol."
)
NEW = "The story follows their journey from the moon to Moss Rock."


def test_a_paragraph_written_again_with_a_few_words_changed_is_left_out():
    assert drop_repeats(TITLED + "\n" + TITLED_AGAIN) == TITLED


def test_a_sentence_written_twice_is_kept_once_and_what_is_new_stays():
    text = f"{SCENE} Yith meets Whonk.\n\n{SCENE} {NEW}"
    # The dropped sentence began a paragraph: the next kept one begins it instead.
    assert drop_repeats(text) == f"{SCENE} Yith meets Whonk.\n\n{NEW}"


def test_text_without_repeats_is_kept_as_written():
    text = f"  {TITLED}\n\n{SCENE}\n{NEW}  "
    assert drop_repeats(text) == text.strip()


def test_a_sentence_sharing_a_phrase_and_a_new_short_one_are_not_repeats():
    # "The end." has no 3-grams to judge; the last sentence shares 2 of its 7 3-grams.
    text = "The ship was lost in space. The end. The ship was found by a crew of miners."
    assert drop_repeats(text) == text


def test_a_short_line_written_again_and_again_is_kept_once():
    # Seen on the embedded model with its repeat penalties off.
    assert drop_repeats("The game of life.\n\n" * 15) == "The game of life."
    honey = "Duchess of Cornwall Honey.\n\n£20 for 227g.\n\nDuchess of Cornwall Honey.\n\nDuc"
    assert drop_repeats(honey) == "Duchess of Cornwall Honey.\n\n£20 for 227g.\n\nDuc"


def test_words_are_compared_without_case_and_edge_punctuation():
    first = "The council voted to build the new bridge."
    again = '"THE council voted, to build the new bridge!"'
    assert drop_repeats(f"{first} {again}") == first


# One long sentence of the embedded model's (issue 23), its clauses written again.
WORLD = "a story of a world where people can be made into puppets by their looks,"
MAN = "a story of a man who is consumed by his wife's death and must decide what to do"
RUN_ON = (
    "In a world where everyone is desperate to escape reality, a tale of a future in which "
    f"everyone hides, {WORLD} {MAN}, a tale of a woman held captive by a stranger, {WORLD} {MAN}."
)


def test_a_long_sentence_loses_the_clauses_it_writes_again_and_keeps_its_end():
    kept = drop_repeats(RUN_ON)
    assert kept == RUN_ON[: RUN_ON.index(f", {WORLD} {MAN}.")] + "."
    assert kept.count("puppets") == 1 and kept.endswith("held captive by a stranger.")


def test_clauses_of_a_short_sentence_are_not_judged_apart():
    # Under 40 words a sentence is one unit: a phrase used twice in it stays.
    text = "Along the way, he meets Sarna. Along the way, she saves him from the guards."
    assert drop_repeats(text) == text


@pytest.mark.parametrize("seed", range(200))
def test_the_filter_fed_in_pieces_gives_what_it_gives_fed_whole(seed):
    rng = random.Random(seed)
    sentences = [
        TITLED,
        TITLED_AGAIN,
        SCENE,
        NEW,
        "Yes.",
        "3.5 metres",
        "Mr. Oz said so.",
        WORLD,
        MAN,
    ]
    spaces = [" ", "\n", "\n\n", "  "]
    text = "".join(rng.choice(sentences) + rng.choice(spaces) for _ in range(rng.randint(0, 8)))
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 40))))
    repeats = RepeatFilter()
    kept_so_far = ""
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        repeats.feed(text[a:b])
        assert repeats.kept.startswith(kept_so_far)  # what is kept is never taken back
        kept_so_far = repeats.kept
    assert repeats.finish() == drop_repeats(text)


@pytest.mark.parametrize("seed", range(200))
def test_streamed_summary_with_repeats_joins_to_the_fitted_reply(seed):
    rng = random.Random(seed)
    sentences = [TITLED, TITLED_AGAIN, SCENE, NEW, "It ends.", "Go on, x", WORLD, f"{MAN},"]
    text = "".join(rng.choice(sentences) + rng.choice([" ", "\n\n"]) for _ in range(6))
    text = text[: rng.randint(0, len(text))]
    target = rng.randint(5, 120)
    reason = rng.choice(["length", "stop"])
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 40))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    finisher = LengthFinisher(target, max_tokens=1000)
    stop = AIMessageChunk(content="", response_metadata={"finish_reason": reason})
    out = [finisher.feed(p) for p in [*pieces, stop]]
    assert "".join([*out, finisher.close()]) == fit_to_length(text, target, cut=reason == "length")


def test_the_first_sentence_streams_as_it_comes_and_a_later_one_once_judged():
    finisher = LengthFinisher(150, max_tokens=1000)
    assert finisher.feed("The Aurora Star-Lens - A tale") == "The Aurora Star-Lens - A tale"
    assert finisher.feed(TITLED[len("The Aurora Star-Lens - A tale") :] + "\n") != ""
    assert finisher.feed("The Ghost Ship - A tale of fate's") == ""  # held: may be a repeat
    finisher.feed(TITLED_AGAIN[len("The Ghost Ship - A tale of fate's") :])
    assert finisher.close() == ""  # both of its sentences were repeats
    assert finisher.dropped == 2


def replying(text):
    async def fn(messages, **kwargs):
        return AIMessage(content=text, response_metadata={"finish_reason": "stop"})

    return FnChatModel(fn=fn)


async def test_the_summary_chain_leaves_the_loop_out_and_notes_it():
    chain = build_summary_chain(replying(TITLED + "\n\n" + TITLED_AGAIN), max_words=40)
    notes = ItemNotes()
    assert await chain.ainvoke("A ship is lost in space.", {"callbacks": [notes]}) == TITLED
    assert notes.notes["repeats_dropped"] == 2
    streamed = [c async for c in chain.astream("A ship is lost in space.")]
    assert "".join(streamed) == TITLED


async def test_a_summary_without_repeats_notes_none():
    chain = build_summary_chain(replying(TITLED), max_words=40)
    notes = ItemNotes()
    assert await chain.ainvoke("A ship is lost in space.", {"callbacks": [notes]}) == TITLED
    assert "repeats_dropped" not in notes.notes


async def test_map_reduce_drops_repeats_in_the_combined_summary():
    doc = "\n\n".join(f"Part {i}. " + "The crew sails on. " * 60 for i in range(3))
    chain = build_map_reduce_summary_chain(
        replying(f"{SCENE}\n{SCENE}"), max_words=20, map_words=20, chunk_tokens=200
    )
    notes = ItemNotes()
    assert await chain.ainvoke(doc, {"callbacks": [notes]}) == SCENE
    assert notes.notes["repeats_dropped"] >= 2  # the chunk summaries' and the combined one's
