"""Text helpers shared by the pipelines: token estimates, output clean-up, loop checks."""

from __future__ import annotations

import math
import re

# English runs at about 4 characters per token for BPE tokenizers; 3.5 errs on
# the side of smaller chunks. tiktoken is not used: it downloads its encodings.
CHARS_PER_TOKEN = 3.5
TOKENS_PER_WORD = 1.6

# Closing quotes and brackets that may follow a sentence's final mark.
_CLOSERS = "\"'\u201d\u2019)]"
# A sentence's end: its final mark and any closers, then whitespace or the end of
# the text. A match at the end of a text still being streamed is tentative: the
# next character may turn out not to be whitespace ("3." of "3.5").
SENTENCE_END = re.compile(r"[.!?\u2026][" + re.escape(_CLOSERS) + r"]*(?=\s|$)")


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` from its length (no tokenizer download)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def max_tokens_for_words(max_words: int) -> int:
    """Return a ``max_tokens`` cap that fits ``max_words`` words plus room to end a sentence."""
    return math.ceil(max_words * TOKENS_PER_WORD) + 24


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


def distinct_ngram_ratio(text: str, n: int = 3) -> float:
    """Return distinct word ``n``-grams over all ``n``-grams (1.0 = no repeats, near 0 = a loop).

    The distinct-n measure of Li et al. 2016, "A Diversity-Promoting Objective
    Function for Neural Conversation Models" (arXiv:1510.03055).
    """
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0
