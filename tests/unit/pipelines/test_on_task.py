import pytest
from langchain_core.messages import AIMessage

from lc_async_pipelines import build_auto_summary_chain, build_summary_chain
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.on_task import off_task_opening, trim_meta_opening
from lc_async_pipelines.runner import Item, RunOptions, RunSummary, run_items
from lc_async_pipelines.summary import NEWS_LEAD_WORDS, NEWS_TEMPERATURE
from tests.unit.fakes import FnChatModel, cycling_llm, replies

# The openings issue 23 quotes, from meeting transcripts and two-person dialogues.
ISSUE_OPENINGS = [
    (
        "The story unfolds like a puzzle: Marketers and Marketing experts manage an "
        "international mouse-controlled remote control.",
        "meeting",
    ),
    ("In this tale, the team talks about the remote control.", "meeting"),
    ("The document is an example of how email can become a burden.", "dialogue"),
    ("The original message is rephrased and edited by adding personal opinions.", "dialogue"),
    ("Here's a rewritten version of the text: Amanda baked cookies.", "dialogue"),
    ("Your answer should be no more than 3 sentences long.", "dialogue"),
    ("In this summary, the council votes on a bridge.", "news"),
    ("The text describes a vote on a bridge.", "news"),
    ("The story of the vote began on Tuesday.", "news"),
    ("A fun story of friendship between friends.", "dialogue"),  # seen on the embedded model
    ("In this joke, Amanda and Jerry plan a picnic.", "dialogue"),  # seen too
    ("**Summary:** The council voted for a bridge.", "news"),
    ("Summarize the news article above in about 48 words.", "news"),
    # seen on news at temperature 0 (issue 23, docs/benchmarks.md)
    ("I'll make sure that I don't miss anything else by rewriting this sentence.", "news"),
    ("I\u2019m going to keep this short: the council voted for a bridge.", "news"),
    ("Awesome! Here's a rewritten version condensed into just four paragraphs:", "news"),
    # seen on news, best of 5 (issue 23): a numbered label
    ("Sentence 1: The US Supreme Court has upheld a key portion of the law.", "news"),
    # seen on news with the penalties over 64 tokens (issue 23)
    ("It's a summary of the document. The document is discussing a recent match.", "news"),
    ("This is a short summary of the match.", "news"),
    ("The document contains key information about a recent match.", "document"),
]
# A label, then a colon: the 135M model writes these before its summary.
LABEL_OPENINGS = [
    ("A news article: The Bank of England raised rates on Thursday.", "news"),
    ("News summary: The council voted for a bridge.", "news"),
    ("Summary: Amanda baked cookies.", "dialogue"),
    ("Key points: the council voted for a bridge.", "news"),
    ("The article: The council voted for a bridge.", "news"),
    ("A short version: Amanda baked cookies.", "dialogue"),
    ("**Key points:** The council voted for a bridge.", "news"),
    ("Main points of the article:\n- The council voted for a bridge.", "news"),
    ("The re-written text:\nAmanda baked cookies.", "dialogue"),
    ("A news story: a doctor's career was revealed by a medical blog.", "news"),
    ("The story: Amanda bakes cookies for Jerry.", "dialogue"),  # not a story: meta
    ("Story summary: Noork finds his ship on a small moon.", "story"),
]
ON_TASK = [
    ("Amanda baked cookies and will bring Jerry some tomorrow.", "dialogue"),
    ("The council voted on Tuesday to build a new bridge.", "news"),
    ("The project manager opened the meeting with the budget.", "meeting"),
    ("The story follows Noork, a man with no memory, on a small moon.", "story"),
    ("In the tale's last scene Noork finds his ship.", "story"),
    ("A strange tale of a man who lost his memory on a moon.", "story"),
    ("Nick Scholfield will ride Spring Heeled in the Grand National.", "news"),
    ("Great Britain's rowers won gold in the eight on Sunday.", "news"),
    ("Ill health forced the minister to resign on Friday.", "news"),
    ("Texting while driving kills thousands; the text of the new law bans it.", "news"),
    # seen on news (fresh-clone CI, 3de83a6): a news story reported, not the article itself
    ("A new story on a doctor's career has been revealed by a medical blog.", "news"),
    # seen on news (issue 23): a named source's report is the news
    ("The report from the British Medical Association (BMA) reveals that doctors...", "news"),
    ("The report by Ofsted found the school inadequate.", "news"),
    ("", "news"),
    # a colon after words that do not name the text: a dateline, a score, a name, a kicker
    ("Aintree, April 11: Nick Scholfield is lined up to ride Spring Heeled.", "news"),
    ("LONDON: The Bank of England raised rates on Thursday.", "news"),
    ("Manchester City 2-1 Chelsea: Sergio Aguero scored twice at the Etihad.", "news"),
    ("2015: the year the council voted for a bridge.", "news"),
    ("Breaking: the council voted for a bridge.", "news"),
    ("Breaking news: the council voted for a bridge.", "news"),
    ("Key West: a hurricane closed the airport on Monday.", "news"),
    ("Amanda: she baked cookies and Jerry will get some.", "dialogue"),
    ("At 10:30 the council voted for a bridge.", "news"),
    # for a story, "The story" is the document (as "The story follows..." above)
    ("The story: Noork wakes on a small moon with no memory.", "story"),
]


@pytest.mark.parametrize(("text", "kind"), ISSUE_OPENINGS)
def test_the_openings_quoted_in_the_issue_are_off_task(text, kind):
    assert off_task_opening(text, kind=kind)


@pytest.mark.parametrize(("text", "kind"), LABEL_OPENINGS)
def test_a_label_ending_in_a_colon_is_off_task(text, kind):
    assert off_task_opening(text, kind=kind)


@pytest.mark.parametrize(("text", "kind"), ON_TASK)
def test_summaries_that_start_with_their_subject_are_on_task(text, kind):
    assert not off_task_opening(text, kind=kind)


def test_an_echo_of_the_prompt_is_off_task_but_the_document_is_not_the_prompt():
    prompt = [
        "Summarize the news article above in about 48 words: what happened, to whom, "
        "where and when. Start with who or what the news is about."
    ]
    echo = "What happened, to whom, where and when: a bridge."
    assert off_task_opening(echo, kind="news", prompt_texts=prompt)
    assert not off_task_opening(echo, kind="news")
    assert not off_task_opening("A bridge will be built, the council said.", prompt_texts=prompt)


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        ("Here's a rewritten version of the text: Amanda baked cookies.", "Amanda baked cookies."),
        ("In this article, the council voted for a bridge.", "The council voted for a bridge."),
        (
            "The text describes how the council voted for a bridge.",
            "The council voted for a bridge.",
        ),
        (
            "The document is an example of how email can become a burden. Workers get 120 emails "
            "a day.",
            "Workers get 120 emails a day.",
        ),
        ("Summary: Jerry gets cookies.", "Jerry gets cookies."),
        ("A news article: Jerry gets cookies.", "Jerry gets cookies."),
        ("A short version: jerry gets cookies.", "Jerry gets cookies."),
        ("**Key points:** Jerry gets cookies.", "Jerry gets cookies."),
        (
            "Key points:\n- Jerry gets cookies.\n- Amanda bakes them.",
            "Jerry gets cookies.\n- Amanda bakes them.",
        ),
        ("LONDON: Jerry gets cookies.", "LONDON: Jerry gets cookies."),  # a dateline: untouched
        ("In this joke, Amanda and Jerry plan a picnic.", "Amanda and Jerry plan a picnic."),
        ("The document contains key facts about a match.", "Key facts about a match."),
        ("Amanda baked cookies.", "Amanda baked cookies."),  # on task: untouched
        # nothing left once trimmed: kept, not emptied
        (
            "Your answer should be no more than 3 sentences long.",
            "Your answer should be no more than 3 sentences long.",
        ),
    ],
)
def test_a_meta_opening_is_trimmed_to_what_follows_it(text, trimmed):
    assert trim_meta_opening(text, kind="dialogue") == trimmed


async def run_one(chain, text):
    records = [r async for r in run_items(chain, [Item("a", 1, text)], RunOptions())]
    summary = RunSummary()
    summary.add(records[0])
    return records[0], summary.as_dict()


DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you some."


async def test_an_off_task_summary_is_asked_again_with_the_reply_shown_as_what_not_to_do():
    bad = "The document is an example of how people share food online."
    good = "Amanda baked cookies and will bring Jerry some tomorrow."
    model, seen = replies(bad, good)
    record, summary = await run_one(build_summary_chain(model, max_words=12), DIALOGUE)
    assert record.output == good
    assert len(seen) == 2
    retry = seen[1]
    assert [m.type for m in retry[-3:]] == ["human", "ai", "human"]
    assert retry[-2].content == bad and DIALOGUE in retry[-3].content
    assert "instead of summarizing" in retry[-1].content
    assert record.notes == {
        "kind": "dialogue", "kind_guessed": True, "off_task_retries": 1, "off_task_trimmed": 0,
    }  # fmt: skip
    assert summary["off_task_retries"] == 1
    assert record.to_dict()["notes"]["off_task_retries"] == 1


async def test_a_second_off_task_reply_is_trimmed_of_its_meta_opening():
    model, seen = replies(
        "Here's a rewritten version of the text: cookies.",
        "Here is the summary: Amanda will bring Jerry cookies tomorrow.",
    )
    chain = build_summary_chain(model, max_words=8, kind="dialogue")
    record, summary = await run_one(chain, DIALOGUE)
    assert record.output == "Amanda will bring Jerry cookies tomorrow."
    assert len(seen) == 2
    assert record.notes["off_task_trimmed"] == 1 and summary["off_task_retries"] == 1
    assert record.notes["kind"] == "dialogue" and record.notes["kind_guessed"] is False


async def test_a_label_opening_is_asked_again_and_a_dateline_is_not():
    news = "The council voted on Tuesday to build a bridge, officials said. " * 5
    good = "The council voted on Tuesday to build a bridge."
    model, seen = replies("A news article: the council and a bridge.", good)
    record, _ = await run_one(build_summary_chain(model, max_words=12, kind="news"), news)
    assert record.output == good and len(seen) == 2
    dateline = "LONDON: The council voted on Tuesday to build a bridge."
    model, seen = replies(dateline)
    record, _ = await run_one(build_summary_chain(model, max_words=12, kind="news"), news)
    assert record.output == dateline and len(seen) == 1


async def test_an_on_task_summary_makes_one_call_and_streams():
    text = "Amanda baked cookies. She will bring Jerry some tomorrow, she said."
    chain = build_summary_chain(cycling_llm(text), max_words=12)
    chunks = [c async for c in chain.astream(DIALOGUE)]
    assert len(chunks) > 1 and "".join(chunks) == text
    model, seen = replies(text)
    record, summary = await run_one(build_summary_chain(model, max_words=12), DIALOGUE)
    assert len(seen) == 1 and record.output == text
    assert "off_task_retries" not in record.notes and summary["off_task_retries"] == 0


async def test_the_story_kind_may_open_with_the_story_and_others_may_not():
    opening = "The story follows Amanda, who bakes cookies for Jerry."
    model, seen = replies(opening)
    await run_one(build_summary_chain(model, max_words=12, kind="story"), DIALOGUE)
    assert len(seen) == 1
    model, seen = replies(opening, "Amanda bakes cookies for Jerry.")
    await run_one(build_summary_chain(model, max_words=7, kind="dialogue"), DIALOGUE)
    assert len(seen) == 2


@pytest.mark.parametrize("kind", ["bogus", "", None, "Auto"])
def test_an_unknown_kind_is_a_configuration_error(kind):
    with pytest.raises(ConfigurationError, match="kind must be one of auto, story"):
        build_auto_summary_chain(cycling_llm("x"), kind=kind)


async def test_the_prompt_speaks_of_the_document_kind_and_not_a_story():
    model, seen = replies("The council voted to build a bridge.")
    news = "The council voted on Tuesday to build a bridge, officials said. " * 5
    record, _ = await run_one(build_summary_chain(model, max_words=12), news)
    assert record.notes["kind"] == "news"
    asked = seen[0][-1].content
    assert "news article" in asked and "story" not in asked


def replies_and_kwargs(text):
    """A model answering ``text``, and the messages and call options of each call."""
    seen = []

    async def fn(messages, **kwargs):
        seen.append((messages, kwargs))
        return AIMessage(content=text, response_metadata={"finish_reason": "stop"})

    return FnChatModel(fn=fn), seen


async def test_a_news_article_is_copied_short_from_its_lead_alone_and_greedily():
    model, seen = replies_and_kwargs("The council voted to build a bridge over the Wend.")
    opening = "The council voted on Tuesday to build a bridge over the Wend, officials said."
    tail = "Officials said the mayor will decide next year. " * 60  # past the lead
    news = f"{opening}\n\n{tail}"
    await run_one(build_summary_chain(model, max_words=12, kind="news"), news)
    messages, kwargs = seen[0]
    assert [m.type for m in messages] == ["system", "human"]  # no worked example
    asked = messages[-1].content
    assert asked.startswith(opening) and "12 words" in asked
    assert "Copy out its most important sentences" in asked
    assert len(asked.split()) < NEWS_LEAD_WORDS + 40 < len(news.split())
    assert kwargs["temperature"] == NEWS_TEMPERATURE


async def test_other_kinds_keep_the_whole_text_and_the_model_temperature():
    model, seen = replies_and_kwargs("Amanda baked cookies and will bring Jerry some.")
    await run_one(build_summary_chain(model, max_words=12, kind="dialogue"), DIALOGUE)
    messages, kwargs = seen[0]
    assert messages[-1].content.startswith(DIALOGUE)
    assert "temperature" not in kwargs
