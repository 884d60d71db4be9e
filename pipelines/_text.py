"""Text helpers shared by the pipelines: token estimates, lengths, output clean-up, loop checks."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from lc_async_pipelines.errors import ConfigurationError

# English runs at about 4 characters per token for BPE tokenizers; 3.5 errs on
# the side of smaller chunks. tiktoken is not used: it downloads its encodings.
CHARS_PER_TOKEN = 3.5
TOKENS_PER_WORD = 1.6

# Closing quotes and brackets that may follow a sentence's final mark.
_CLOSERS = "\"'\u201d\u2019)]"
# Words whose period rarely ends a sentence: titles before a name ("Dr. Oz") and
# Latin abbreviations; a single capital letter is an initial ("J. K. Rowling"). A
# sentence ending in "U.S." is missed: a lost cut point, never a cut inside a name.
_ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Rev", "Sen", "Rep", "Gov", "Gen", "Col", "Capt", "Lt",
    "Sgt", "St", "vs", "e.g", "i.e",
)  # fmt: skip
# One fixed-width look-behind each: Python's look-behinds take no alternatives of
# different widths.
_NOT_ABBREVIATION = "".join(rf"(?<!\b{re.escape(a)})" for a in _ABBREVIATIONS) + r"(?<!\b[A-Z])"
# A sentence's end: its final mark and any closers, then whitespace or the end of
# the text. A match at the end of a text still being streamed is tentative: the
# next character may turn out not to be whitespace ("3." of "3.5").
SENTENCE_END = re.compile(
    r"(?:[!?\u2026]|" + _NOT_ABBREVIATION + r"\.)[" + re.escape(_CLOSERS) + r"]*(?=\s|$)"
)
# A word, as ``str.split`` counts them: a run of non-whitespace.
WORD = re.compile(r"\S+")
# A target length in words is met within this many percent either way.
LENGTH_TOLERANCE_PCT = 30


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` from its length (no tokenizer download)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def max_tokens_for_words(max_words: int) -> int:
    """Return a ``max_tokens`` cap that fits ``max_words`` words plus room to end a sentence."""
    return math.ceil(max_words * TOKENS_PER_WORD) + 24


def word_range(target_words: int) -> tuple[int, int]:
    """Return the accepted length, in words, for a target of ``target_words``.

    Returns:
        ``(low, high)``: ``ceil(0.7 * target_words)`` and ``floor(1.3 * target_words)``
        (``LENGTH_TOLERANCE_PCT`` percent either way, in integer arithmetic so
        that 0.7 * 10 is 7, not 8).

    Raises:
        ConfigurationError: ``target_words`` is below 1.
    """
    if target_words < 1:
        raise ConfigurationError(f"target_words must be at least 1, not {target_words}")
    low = -(-target_words * (100 - LENGTH_TOLERANCE_PCT) // 100)
    high = target_words * (100 + LENGTH_TOLERANCE_PCT) // 100
    return low, high


def max_tokens_for_target(target_words: int) -> int:
    """Return a ``max_tokens`` cap for a reply of about ``target_words`` words.

    Room for the upper end of :func:`word_range` at ``TOKENS_PER_WORD``, plus 16
    tokens: the model can end a sentence just past the target, and what lies
    beyond the upper end is cut by the finishing step anyway.
    """
    return math.ceil(word_range(target_words)[1] * TOKENS_PER_WORD) + 16


def finish_text(text: str) -> str:
    """Strip ``text`` and cut a trailing unfinished sentence, if a finished one precedes it.

    A reply cut by ``max_tokens`` otherwise ends mid-word. The chains use the
    streaming form, which trims only a reply the model reports as cut:
    :func:`lc_async_pipelines._finish.finish_reply`.
    """
    text = text.strip()
    ends = list(SENTENCE_END.finditer(text))
    if ends and ends[-1].end() < len(text):
        return text[: ends[-1].end()]
    return text


def lead(text: str, max_words: int) -> str:
    """Return the opening of ``text``: its first paragraphs, at most ``max_words`` words in all.

    Whole paragraphs (lines) are kept while they fit; a first paragraph longer
    than ``max_words`` is cut at its last sentence end within them (or, with
    none, after ``max_words`` words). Paragraphs are joined by a blank line.

    Args:
        text: the document.
        max_words: most words kept (``str.split`` words), at least 1.

    Returns:
        The lead; ``""`` for a text with no words.
    """
    kept: list[str] = []
    count = 0
    for paragraph in (p.strip() for p in text.splitlines()):
        words = len(paragraph.split())
        if not words:
            continue
        if count + words > max_words:
            if not kept:
                kept.append(finish_text(" ".join(paragraph.split()[:max_words])))
            break
        kept.append(paragraph)
        count += words
    return "\n\n".join(kept)


def distinct_ngram_ratio(text: str, n: int = 3) -> float:
    """Return distinct word ``n``-grams over all ``n``-grams (1.0 = no repeats, near 0 = a loop).

    The distinct-n measure of Li et al. 2016, "A Diversity-Promoting Objective
    Function for Neural Conversation Models" (arXiv:1510.03055).
    """
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the choice closest to ``word``, or "".

    Close means a ``difflib`` ratio of at least 0.6 (``get_close_matches``), so a
    typo finds its word ("sumary" → "summary", "docid" → "doc_id") and an
    unrelated word finds none.

    Args:
        word: what was given (a pipeline name, a flag, a field).
        choices: what exists.
    """
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
