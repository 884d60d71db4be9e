"""Drop the sentences of a reply that say again what it already said.

A small model summarizing a long document sometimes writes a paragraph a
second time with a few words changed (issue 23: "The Ghost Ship - A tale of
fate's cruel hand..." after "The Aurora Star-Lens - A tale of fate's cruel
hand..."), which llama.cpp's DRY penalty does not stop because the repeat is
not word for word. :class:`RepeatFilter` reads a reply as it grows and drops
such sentences.

The rule:

- **Units.** The reply is split into units: a unit ends at a sentence end
  followed by whitespace (``SENTENCE_END``), at a comma or semicolon followed
  by whitespace (a clause: the embedded model also loops inside one long
  sentence, "..., a story of a world where people can be made into puppets,
  a story of a man who..., a story of a world where people can be made into
  puppets, ..."), or at a line break, and carries the whitespace before it.
  The last unit ends with the reply.
- **Repeat.** A unit after the first is a repeat when it has the same words
  as a unit before it (kept or dropped) and at least :data:`MIN_WORDS_AGAIN`
  of them, or when it has at least :data:`MIN_TRIGRAMS` word 3-grams and at
  least :data:`REPEAT_SHARE` of them appear in the units before it. Words
  are compared lower-cased, with the punctuation at their ends removed. So a
  short line written again and again ("The game of life." fifteen times,
  seen on the embedded model) is kept once, while "However," or "The end."
  twice, as people write them, stay. (:func:`uncovered`, judging one text
  against another, counts every unit with the same words.)
- **Drop.** A repeat is left out whole. When it began a new line, the next
  kept unit begins one instead, so paragraphs stay apart; when it ended a
  sentence after a kept clause, its final mark replaces that clause's comma
  ("A, B." with B a repeat gives "A.").

Overlap of word n-grams is the usual measure of repeated text: distinct-n
(Li et al. 2016, arXiv:1510.03055) over a whole reply; here it is taken per
sentence against what came before, so the first telling is kept.
"""

from __future__ import annotations

import re
from typing import Final

from lc_async_pipelines._text import SENTENCE_END, WORD

__all__ = ["MIN_TRIGRAMS", "REPEAT_SHARE", "RepeatFilter", "drop_repeats", "uncovered"]

MIN_TRIGRAMS: Final = 3
MIN_WORDS_AGAIN: Final = 3
LONG_SENTENCE_WORDS: Final = 40
REPEAT_SHARE: Final = 0.5
# A clause ends at a comma or semicolon before whitespace ("1,000" is no end).
_CLAUSE_END = re.compile(r"[,;](?=\s)")
_HELD = (",", ";")
_FINAL_MARK = re.compile(r"([.!?\u2026])[\"'\u201d\u2019)\]]*\s*$")
_EDGE_PUNCTUATION = "\"'()[]{}<>,.;:!?*_-\u2013\u2014\u2018\u2019\u201c\u201d\u2026"

Trigram = tuple[str, str, str]


def _words(unit: str) -> tuple[str, ...]:
    stripped = (m.group().strip(_EDGE_PUNCTUATION).lower() for m in WORD.finditer(unit))
    return tuple(w for w in stripped if w)


def _trigrams(words: tuple[str, ...]) -> list[Trigram]:
    return list(zip(words, words[1:], words[2:], strict=False))


class RepeatFilter:
    """Split a growing reply into units and keep those that are not repeats (module rule).

    :meth:`feed` the reply's text as it comes; :attr:`kept` is then the kept
    complete units, joined as written (it only ever grows), and
    :attr:`pending` the unit still being written. :meth:`finish` judges that
    last unit and returns the whole kept text. Fed in any pieces, the result
    is the same: ``drop_repeats(text)``.
    """

    def __init__(self, *, min_words_again: int = MIN_WORDS_AGAIN) -> None:
        self._min_words_again = min_words_again  # shortest unit judged by its words alone
        self._kept = ""  # the kept units joined; a trailing "," or ";" is not yet in `kept`
        self.dropped = 0  # units left out
        self._raw = ""  # the reply so far, leading whitespace dropped
        self._done = 0  # characters of _raw split into complete units
        self._seen: set[Trigram] = set()
        self._seen_units: set[tuple[str, ...]] = set()
        self._line_break = ""  # whitespace of a dropped unit that began a line
        self._units = 0
        self._sentence_words = 0  # words of the sentence so far, in judged units

    @property
    def kept(self) -> str:
        """The kept complete units, joined as written; it only ever grows.

        A clause's final comma is held back until the next unit is judged: when
        that unit is a repeat ending its sentence, its final mark takes the
        comma's place ("A, B." with B a repeat gives "A.").
        """
        return self._kept[:-1] if self._kept.endswith(_HELD) else self._kept

    @property
    def units(self) -> int:
        """How many units have been judged (kept or dropped)."""
        return self._units

    @property
    def pending(self) -> str:
        """The unit still being written: the text after the last complete unit."""
        return self._raw[self._done :]

    def feed(self, piece: str) -> None:
        """Take the next piece of the reply and judge every unit it completes."""
        if not self._raw:
            piece = piece.lstrip()
        self._raw += piece
        while (end := self._next_end()) is not None:
            self._judge(self._raw[self._done : end])
            self._done = end

    def finish(self) -> str:
        """Judge the last unit; return the kept text, stripped (``drop_repeats`` of the reply)."""
        if self.pending.strip():
            self._judge(self.pending)
        self._done = len(self._raw)
        return self.kept.strip()

    def _next_end(self) -> int | None:
        """Where the next complete unit ends: a final sentence or clause end, or a line break."""
        rest = self._raw[self._done :]
        start = len(rest) - len(rest.lstrip())  # a unit's leading whitespace is its own
        body = rest[start:]
        ends = [m.end() for m in SENTENCE_END.finditer(body) if m.end() < len(body)]
        if "\n" in body:
            ends.append(body.index("\n"))
        ends += [e for e in (m.end() for m in _CLAUSE_END.finditer(body)) if self._long(body[:e])]
        ends = [e for e in ends if e > 0]
        return self._done + start + min(ends) if ends else None

    def _long(self, clause: str) -> bool:
        """Whether a clause ending here ends a long sentence's clause (one a loop can hide in)."""
        return self._sentence_words + len(clause.split()) >= LONG_SENTENCE_WORDS

    def _judge(self, unit: str) -> None:
        words = _words(unit)
        grams = _trigrams(words)
        repeat = len(words) >= self._min_words_again and words in self._seen_units
        repeat = repeat or (
            self._units > 0
            and len(grams) >= MIN_TRIGRAMS
            and sum(g in self._seen for g in grams) >= REPEAT_SHARE * len(grams)
        )
        self._seen.update(grams)
        self._seen_units.add(words)
        self._units += 1
        clause = unit.rstrip().endswith(_HELD)
        self._sentence_words = self._sentence_words + len(unit.split()) if clause else 0
        if repeat:
            self.dropped += 1
            lead = unit[: len(unit) - len(unit.lstrip())]
            if "\n" in lead and "\n" not in self._line_break:
                self._line_break = lead
            mark = _FINAL_MARK.search(unit)
            if mark and self._kept.endswith(_HELD):
                self._kept = self._kept[:-1] + mark.group(1)
            return
        if self._line_break:
            body = unit.lstrip()
            if "\n" not in unit[: len(unit) - len(body)]:
                unit = self._line_break + body
            self._line_break = ""
        self._kept += unit


def drop_repeats(text: str) -> str:
    """Return ``text`` without the units that repeat what came before (the module's rule).

    Args:
        text: a whole reply.

    Returns:
        The reply stripped, its repeated sentences left out; a reply with
        none is returned as it is (stripped).
    """
    repeats = RepeatFilter()
    repeats.feed(text)
    return repeats.finish()


def uncovered(text: str, said: str) -> str:
    """Return the units of ``text`` that do not repeat ``said`` (nor each other).

    Args:
        text: a document, or a reply, split into units as the module says.
        said: what was already said (a summary).

    Returns:
        ``text``'s units that are not repeats when read after ``said`` (the
        module's rule, a unit of any length with the same words as one
        before it counting as a repeat), joined as written and stripped;
        ``""`` for none.
    """
    repeats = RepeatFilter(min_words_again=1)
    # A paragraph break ends said's last unit whatever its last character is.
    repeats.feed(said.strip() + "\n\n")
    start = len(repeats.kept)
    repeats.feed(text.strip())
    return repeats.finish()[start:].strip()
