import random

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from lc_async_pipelines._finish import (
    ReplyFinisher,
    finish_reply,
    finish_reply_text,
    hold_from_chars,
    reply_was_cut,
)
from lc_async_pipelines._text import (
    SENTENCE_END,
    distinct_ngram_ratio,
    estimate_tokens,
    finish_text,
    lead,
    max_tokens_for_words,
)


def test_finish_text_cuts_unfinished_sentence():
    assert finish_text("  One. Two is cut mid") == "One."


def test_finish_text_keeps_closing_quote_and_whole_text():
    assert finish_text('He said "go." She went') == 'He said "go."'
    assert finish_text("All done!") == "All done!"
    assert finish_text("no sentence end at all") == "no sentence end at all"


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("He met Dr. Oz. Then", ["He met Dr. Oz."]),  # a title is no end
        ("Mrs. May and Mr. Smith left. Then", ["Mrs. May and Mr. Smith left."]),
        ("J. K. Rowling wrote it. Yes", ["J. K. Rowling wrote it."]),  # initials
        ("Cats, e.g. this one. And", ["Cats, e.g. this one."]),
        ("It is 3.5 now. ok", ["It is 3.5 now."]),
        ("Go! Why? Dr.", ["Go!", "Go! Why?"]),
    ],
)
def test_sentence_ends_skip_titles_and_initials(text, ends):
    assert [text[: m.end()] for m in SENTENCE_END.finditer(text)] == ends


def test_a_cut_reply_never_ends_on_a_title():
    assert finish_text("The show had reactions. Dr. Oz said") == "The show had reactions."


def test_distinct_ngram_ratio_flags_loops():
    loop = "the cat sat on the mat. " * 20
    assert distinct_ngram_ratio(loop) < 0.3
    assert distinct_ngram_ratio("a b c d e f g h") == 1.0


def test_token_estimates_grow_with_length():
    assert estimate_tokens("x" * 35) == 10
    assert max_tokens_for_words(100) > 100


# --- the streaming finisher (lc_async_pipelines._finish) ---------------------------------


def _stream(finisher: ReplyFinisher, chunks) -> list[str]:
    out = [finisher.feed(c) for c in chunks]
    out.append(finisher.close())
    return [piece for piece in out if piece]


def _stop(reason: str | None) -> AIMessageChunk:
    return AIMessageChunk(content="", response_metadata={"finish_reason": reason} if reason else {})


@pytest.mark.parametrize("seed", range(300))
def test_streamed_pieces_join_to_the_whole_reply_finished_for_any_chunking(seed):
    rng = random.Random(seed)
    words = ["Go", "on", "3.5", "it.", 'said."', "ok!", "why?", "well\u2026", "(yes.)", "e.g.", "x"]
    spaces = [" ", " ", " ", "\n\n", "  "]
    text = rng.choice(["", " ", "\n"]) + "".join(
        rng.choice(words) + rng.choice(spaces) for _ in range(rng.randint(0, 40))
    )
    text = text[: rng.randint(0, len(text))]  # cut anywhere, mid-word included
    hold_from = rng.randint(0, len(text) + 5)
    reason = rng.choice(["length", "stop"])
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 30))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]

    streamed = ReplyFinisher(max_tokens=100)
    streamed.hold_from = hold_from
    whole = ReplyFinisher(max_tokens=100)
    whole.hold_from = hold_from
    expected = finish_reply_text(text, cut=reason == "length", hold_from=hold_from)
    assert "".join(_stream(streamed, [*pieces, _stop(reason)])) == expected
    message = AIMessage(content=text, response_metadata={"finish_reason": reason})
    assert "".join(_stream(whole, [message])) == expected


def test_a_cut_reply_loses_only_text_after_a_sentence_end_in_the_last_stretch():
    text = "First sentence here. Second one is long and never ends"
    assert finish_reply_text(text, cut=True, hold_from=0) == "First sentence here."
    # The last sentence end lies before the last stretch: the cut reply is kept whole.
    assert finish_reply_text(text, cut=True, hold_from=25) == text
    assert finish_reply_text("  " + text + " ", cut=False, hold_from=0) == text


def test_text_is_held_only_after_a_sentence_end_in_the_last_stretch():
    finisher = ReplyFinisher(max_tokens=100)
    finisher.hold_from = 10
    assert finisher.feed("  Early words") == "Early words"  # before the stretch: at once
    assert finisher.feed(" go on. Then") == " go on."  # held after the end at 20
    assert finisher.feed(" more ") == ""
    assert finisher.feed("words.") == ""  # a tentative end: "words.5" is no end
    assert finisher.feed(" And") == " Then more words."
    assert finisher.feed(_stop("length")) == ""
    assert finisher.close() == ""  # cut: the held " And" is dropped


def test_an_uncut_reply_releases_its_held_tail_at_the_end():
    finisher = ReplyFinisher(max_tokens=100)
    finisher.hold_from = 0
    assert finisher.feed("One. Two") == "One."
    assert finisher.feed(_stop("stop")) == ""
    assert finisher.close() == " Two"


@pytest.mark.parametrize(
    ("reason", "output_tokens", "text", "cut"),
    [
        ("length", None, "", True),
        ("max_tokens", None, "", True),  # Anthropic's stop_reason
        ("MAX_TOKENS", None, "", True),  # Gemini's
        ("stop", 500, "x" * 5000, False),  # a reported reason wins
        ("end_turn", None, "", False),
        (None, 100, "", True),  # no reason: the reported usage
        (None, 99, "x" * 5000, False),
        (None, None, "x" * 350, True),  # neither: the estimate (3.5 characters a token)
        (None, None, "x" * 340, False),
    ],
)
def test_reply_was_cut(reason, output_tokens, text, cut):
    assert reply_was_cut(reason, output_tokens, text, max_tokens=100) is cut


def test_other_providers_stop_reason_keys_are_read():
    for key in ("stop_reason", "done_reason", "stopReason"):
        finisher = ReplyFinisher(max_tokens=100)
        finisher.hold_from = 0
        finisher.feed(AIMessageChunk(content="One. Two", response_metadata={key: "max_tokens"}))
        assert finisher.close() == ""


def test_the_last_stretch_grows_with_the_budget():
    assert hold_from_chars(100) == 126  # (100 - 64) tokens at 3.5 characters
    assert hold_from_chars(424) == (424 - 106) * 3.5  # a quarter of the budget
    assert hold_from_chars(40) == 0


async def test_the_runnable_streams_and_an_empty_reply_is_an_empty_string():
    step = finish_reply(100)
    assert [c async for c in step.astream(AIMessage(content="  Hi there. "))] == ["Hi there."]
    assert await step.ainvoke(AIMessage(content="")) == ""
    assert step.invoke(AIMessage(content=" x ")) == "x"


def test_the_lead_keeps_whole_first_paragraphs_up_to_the_limit():
    text = "One two three four.\n\nFive six seven.\nEight nine ten eleven.\n\nTwelve."
    assert lead(text, 7) == "One two three four.\n\nFive six seven."
    assert lead(text, 11) == "One two three four.\n\nFive six seven.\n\nEight nine ten eleven."
    assert lead(text, 100) == text.replace("\nEight", "\n\nEight")


def test_a_first_paragraph_over_the_limit_is_cut_at_a_sentence_end():
    text = "Alpha beta gamma. Delta epsilon zeta eta. Theta iota kappa lambda.\n\nMu."
    assert lead(text, 8) == "Alpha beta gamma. Delta epsilon zeta eta."
    assert lead("Alpha beta gamma delta epsilon", 3) == "Alpha beta gamma"
    assert lead(" \n\n ", 10) == ""
