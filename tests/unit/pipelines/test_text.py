from lc_async_pipelines._text import (
    distinct_ngram_ratio,
    estimate_tokens,
    finish_text,
    max_tokens_for_words,
)


def test_finish_text_cuts_unfinished_sentence():
    assert finish_text("  One. Two is cut mid") == "One."


def test_finish_text_keeps_closing_quote_and_whole_text():
    assert finish_text('He said "go." She went') == 'He said "go."'
    assert finish_text("All done!") == "All done!"
    assert finish_text("no sentence end at all") == "no sentence end at all"


def test_distinct_ngram_ratio_flags_loops():
    loop = "the cat sat on the mat. " * 20
    assert distinct_ngram_ratio(loop) < 0.3
    assert distinct_ngram_ratio("a b c d e f g h") == 1.0


def test_token_estimates_grow_with_length():
    assert estimate_tokens("x" * 35) == 10
    assert max_tokens_for_words(100) > 100
