"""What a document is, for the summary prompts: story, meeting, dialogue, news or document.

:func:`guess_kind` is the ``auto`` of the summary pipelines' ``kind`` option.
It reads cheap signs in the text, in this order:

- **speaker turns** (``Name: text`` lines, at least 3 of them by at least 2
  speakers, and at least 40% of the non-empty lines): a ``meeting`` from
  :data:`MEETING_MIN_WORDS` words or :data:`MEETING_MIN_SPEAKERS` speakers,
  else a ``dialogue``;
- **long** (:data:`LONG_MIN_WORDS` words or more): a ``story`` when at least
  10% of its paragraphs open with a quotation mark (spoken lines) or it
  carries a Project Gutenberg header, else a ``document``;
- **short**: ``news`` when reporting words (``said``, ``told``, ``police``,
  weekdays, ``Mr``...) come at least :data:`NEWS_MIN_CUES_PER_100` times per
  100 words, else a ``document``.

The thresholds were set on the shared data (``../shared/data``: of its 109
news articles 103 come out ``news`` and 6 ``document``, sports and travel
pieces with few reporting words; its 52 SQuALITY stories all come out
``story``) and on hand-made transcripts. A wrong guess only picks other
wording for the same question, and ``kind`` can be given instead.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

__all__ = [
    "KINDS",
    "LONG_MIN_WORDS",
    "MEETING_MIN_SPEAKERS",
    "MEETING_MIN_WORDS",
    "NEWS_MIN_CUES_PER_100",
    "DocumentKind",
    "SummaryKind",
    "check_kind",
    "guess_kind",
]

DocumentKind = Literal["story", "meeting", "dialogue", "news", "document"]
SummaryKind = Literal["auto", "story", "meeting", "dialogue", "news", "document"]
KINDS: Final[tuple[str, ...]] = get_args(SummaryKind)

MEETING_MIN_WORDS: Final = 800
MEETING_MIN_SPEAKERS: Final = 4
LONG_MIN_WORDS: Final = 2000
NEWS_MIN_CUES_PER_100: Final = 0.5
_MIN_TURNS = 3
_TURN_SHARE = 0.4
_QUOTED_PARAGRAPH_SHARE = 0.1

# "Amanda: ...", "#Person1#: ...", "Project Manager: ...", "A: ..."; at most 3 name words.
_TURN = re.compile(
    r"^\s*(?P<who>[#\[]?[A-Z][\w.'\-]*(?: [A-Z0-9][\w.'\-]*){0,2}[#\]]?)\s*:\s+\S", re.MULTILINE
)
_NOT_SPEAKERS = frozenset({"Note", "Update", "Source", "Photo", "Editor", "Q", "Read", "See"})
_NEWS_CUE = re.compile(
    r"\b(?:said|says|told|tell|according to|spokes(?:man|woman|person)|reported|revealed|"
    r"announced|insisted|claimed|believes|officials?|police|government|minister|president|"
    r"manager|club|league|season|million|Mr|Mrs|Ms|Dr|per ?cent|BBC|CNN|Reuters|yesterday|"
    r"(?:last|this|next) (?:week|month|year)|on (?:Monday|Tuesday|Wednesday|Thursday|Friday|"
    r"Saturday|Sunday))\b|[£$€]\d"
)
_GUTENBERG = re.compile(r"Project Gutenberg|Transcriber's Note|Distributed Proofreading", re.I)
_PARAGRAPHS = re.compile(r"\n\s*\n")
_QUOTES = "\"'\u201c\u2018"


def check_kind(kind: object) -> SummaryKind:
    """Return ``kind`` if it is one of :data:`KINDS`.

    Raises:
        ValueError: any other value; the message lists the kinds.
    """
    if isinstance(kind, str) and kind in KINDS:
        return kind  # type: ignore[return-value]  # checked against the Literal's values
    msg = f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
    raise ValueError(msg)


def _speaker_turns(text: str) -> tuple[int, int]:
    """Return (turn lines, distinct speakers)."""
    speakers = [
        m["who"] for m in _TURN.finditer(text) if m["who"].strip("#[]") not in _NOT_SPEAKERS
    ]
    return len(speakers), len(set(speakers))


def _quoted_paragraph_share(text: str) -> float:
    paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
    if not paragraphs:
        return 0.0
    return sum(p[0] in _QUOTES for p in paragraphs) / len(paragraphs)


def guess_kind(text: str) -> DocumentKind:
    """Guess what ``text`` is, from speaker turns, length and reporting words (module rules).

    Args:
        text: the document, any length (one pass over it; no model call).

    Returns:
        ``"dialogue"``, ``"meeting"``, ``"story"``, ``"news"`` or ``"document"``.
    """
    words = len(text.split())
    lines = sum(1 for line in text.splitlines() if line.strip())
    turns, speakers = _speaker_turns(text)
    if turns >= _MIN_TURNS and speakers >= 2 and turns >= _TURN_SHARE * lines:
        meeting = words >= MEETING_MIN_WORDS or speakers >= MEETING_MIN_SPEAKERS
        return "meeting" if meeting else "dialogue"
    if words >= LONG_MIN_WORDS:
        if _GUTENBERG.search(text) or _quoted_paragraph_share(text) >= _QUOTED_PARAGRAPH_SHARE:
            return "story"
        return "document"
    if words and len(_NEWS_CUE.findall(text)) * 100 / words >= NEWS_MIN_CUES_PER_100:
        return "news"
    return "document"
