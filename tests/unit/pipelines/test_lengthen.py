"""A summary the model ends under 0.7N words is lengthened once from what it left out."""

from lc_async_pipelines import build_summary_chain
from lc_async_pipelines._text import word_range
from lc_async_pipelines.runner.notes import ItemNotes
from tests.unit.fakes import replies

DOC = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you some."
SHORT = "Amanda baked cookies."  # 3 words: under 7 of N = 10
MORE = "She will bring Jerry some tomorrow at noon."


async def test_a_short_summary_is_lengthened_once_from_the_sentences_it_left_out():
    doc = (
        "The council met on Monday in the old town hall.\n"
        "It voted to build a new bridge over the river.\n"
        "The bridge will open in the spring of 2027."
    )
    summary = "The council met on Monday in the old town hall."  # 10 words: under 14 of N = 20
    added = "It will build a bridge that opens in 2027."
    model, seen = replies(summary, added)
    notes = ItemNotes()
    chain = build_summary_chain(model, max_words=20, kind="document")
    assert await chain.ainvoke(doc, {"callbacks": [notes]}) == f"{summary} {added}"
    assert len(seen) == 2 and notes.notes["lengthened"] == 1
    asked = seen[1][-1].content  # the same prompt, of what the summary does not cover
    assert "new bridge" in asked and "2027" in asked and "town hall" not in asked
    assert "about 10 words" in asked  # N minus the words written


async def test_a_summary_in_range_makes_one_call():
    model, seen = replies(f"{SHORT} {MORE}")
    notes = ItemNotes()
    chain = build_summary_chain(model, max_words=10, kind="dialogue")
    assert await chain.ainvoke(DOC, {"callbacks": [notes]}) == f"{SHORT} {MORE}"
    assert len(seen) == 1 and "lengthened" not in notes.notes


async def test_streamed_pieces_join_to_the_lengthened_summary():
    model, _ = replies(SHORT, MORE)
    chain = build_summary_chain(model, max_words=10, kind="dialogue")
    chunks = [c async for c in chain.astream(DOC)]
    assert chunks[0] == SHORT and "".join(chunks) == f"{SHORT} {MORE}"


async def test_a_continuation_repeating_the_summary_or_about_the_task_adds_nothing_of_that():
    again = "She will bring Jerry some."  # with SHORT again: 8 words, within 7 ±30%
    model, _ = replies(SHORT, f"{SHORT} {again}")
    chain = build_summary_chain(model, max_words=10, kind="dialogue")
    assert await chain.ainvoke(DOC) == f"{SHORT} {again}"
    model, _ = replies(SHORT, f"Sure, here is more: {again}")
    chain = build_summary_chain(model, max_words=10, kind="dialogue")
    assert await chain.ainvoke(DOC) == f"{SHORT} {again}"
    model, _ = replies(SHORT, SHORT)
    chain = build_summary_chain(model, max_words=10, kind="dialogue")
    assert await chain.ainvoke(DOC) == SHORT  # nothing new: kept as it was


async def test_the_lengthened_summary_stays_under_the_upper_end():
    long_more = " ".join(f"Then Jerry ate cookie number {i} slowly." for i in range(20))
    model, _ = replies(SHORT, long_more)
    out = await build_summary_chain(model, max_words=10, kind="dialogue").ainvoke(DOC)
    assert out.startswith(SHORT + " Then Jerry")
    assert len(out.split()) <= word_range(10)[1]


async def test_an_empty_reply_is_not_continued():
    model, seen = replies("", "")
    out = await build_summary_chain(model, max_words=10, kind="dialogue").ainvoke(DOC)
    assert out == "" and len(seen) == 1


async def test_lengthen_false_keeps_a_short_summary_at_one_call():
    model, seen = replies(SHORT, MORE)
    chain = build_summary_chain(model, max_words=10, kind="dialogue", lengthen=False)
    assert await chain.ainvoke(DOC) == SHORT and len(seen) == 1
