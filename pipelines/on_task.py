"""Keep a summary on task: spot a meta opening, ask again once, trim what is left of it.

A small model asked for a summary often writes about the text instead
("The document is an example of...", "Here's a rewritten version of the
text:", "In this summary...") or about the task ("Your answer should be no
more than 3 sentences long..."), or repeats the instruction (issue 23), or
puts a label before the summary ("A news article:", "Key points:"; a few
words naming the text, then a colon, unlike a dateline such as "LONDON:").
:func:`off_task_opening` spots that in a reply's opening;
:func:`trim_meta_opening` removes it; :func:`on_task` wraps a summary step
so that an off-task reply is asked for again once, with the reply shown to
the model as what not to do (``RETRY_PROMPT``), and trimmed if the second
reply opens the same way.

Only the opening is judged: the first sentence, at most
:data:`OPENING_WORDS` words. It is held back while it is judged, and the
rest of an on-task reply streams as it comes.

Each retry is reported as a LangChain custom event (``adispatch_custom_event``,
langchain-core's callback API for events a chain raises itself): the runner's
:data:`~lc_async_pipelines.runner.record.NOTE_EVENT` with
``{"off_task_retries": 1, "off_task_trimmed": 0 or 1}``, which the runner adds
up in the record's ``notes`` and the run summary (``off_task_retries``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final, cast

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnablePassthrough,
)

from lc_async_pipelines.prompts.summary import RETRY_PROMPT
from lc_async_pipelines.runner.notes import NOTE_EVENT

__all__ = [
    "OPENING_WORDS",
    "off_task_opening",
    "on_task",
    "trim_meta_opening",
]

OPENING_WORDS: Final = 30

_NOUNS = (
    r"(?:document|text|article|passage|excerpt|extract|summary|story|tale|conversation|dialogue|"
    r"transcript|meeting|message|email|e-mail|chat|report|piece|content|input|paragraph|section|"
    r"part|chunk|original|following|above|given|provided|author|writer|narrator|speaker|user)"
)
# Openings that are about the text or the task, whatever the kind.
_META = re.compile(
    r"^(?:"
    rf"(?:the|this|that|these|in the|in this|from the|from this|according to the) "
    rf"(?:(?:original|above|following|given|provided|whole|entire|news|short|long|first|second) )*"
    # "The report from the British Medical Association reveals...": a named source's
    # report is news, not the article (seen on news, issue 23)
    rf"{_NOUNS}s?\b(?!\s+(?:from|by)\s+(?:the\s+)?(?-i:[A-Z]))"
    r"|here(?:'s|\u2019s| is| are)\b|below is\b|sure\b|certainly\b|of course\b|okay\b|as an ai\b"
    r"|summary\s*:|summari[sz]e\b|summari[sz]ing\b|to summari[sz]e\b|in summary\b|in short\b"
    r"|your (?:answer|summary|response|task)\b|you (?:should|must|need|are asked|will)\b"
    r"|(?:write|please|make sure|remember|note|answer|instructions?)\b"
    r"|i (?:have|will|can|am going to)\b|i(?:'ll|\u2019ll|'m|\u2019m)\b|let me\b|let's\b"
    r"|(?:awesome|great|perfect|alright|absolutely)\s*[!,]"  # "Awesome! Here's a rewritten..."
    r"|in this [\w' -]{1,30},"  # "In this joke, ..." (seen on the embedded model)
    # "It's a summary of the document." (seen on news, issue 23)
    r"|(?:it|this|that)(?:'s|\u2019s| is) (?:a|an|the|my|our) (?:(?:short|brief|quick|new) )?"
    r"(?:summary|summaries|rewrite|rewritten|version|overview|recap)\b"
    r")",
    re.IGNORECASE,
)
# "The story...", "In this tale...", "A fun story of..." are meta only when the document
# is not a story. In news a story is the news itself: "A new story on X was revealed by a
# blog" reports one (seen on the embedded model); "The story of..." still means the article.
_STORY_OPENING = re.compile(
    r"^(?:the|this|in the|in this|(?:a|an)(?: [\w-]+){0,2}) (?:story|tale)\b", re.IGNORECASE
)
_A_STORY = re.compile(r"^an? ", re.IGNORECASE)
# A label opening: a few words naming the text, then a colon ("A news article:", "Key
# points:", "The short version:", seen on the embedded model). Every word must name the
# text or the task (or be a determiner), so a dateline ("LONDON:", "Aintree, April 11:"),
# a score line ("Manchester City 2-1 Chelsea:") or a newsroom kicker ("Breaking:",
# "Report:", "Update:"), which are the article's own register, stay content.
_LABEL = re.compile(r"^([\w' ;*-]{1,60}?)\s*:(?=[\s*_]|$)")
_LABEL_WORDS: Final = 6
_LABEL_NAMES = frozenset(
    """summary summaries summarised summarized article articles news story stories tale tales
    text document version versions point points key main short shorter brief rewritten rewrite
    condensed shortened simplified simple quick concise final original takeaway takeaways
    highlight highlights overview recap gist tldr tl;dr abstract excerpt passage paragraph
    sentence sentences
    content piece idea ideas fact facts details answer response output""".split()
)
_LABEL_FILLERS = frozenset("a an the this that my our its of in and".split())
_STORY_WORDS = frozenset("story stories tale tales".split())
_LEADING = re.compile(r"^[\s\"'*#_>\-\u201c\u2018]+")
_SENTENCE = re.compile(r"(?<=[.!?:])[\"'\u201d\u2019)\]]*\s+")
_ENDED = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")
# What a meta opening's first sentence can be cut back to: after "...:" or "In this X, ".
_LEAD_IN = re.compile(
    rf"^(?:[^.!?:]{{0,120}}:[*_]*\s+|(?:in|from) (?:the|this) {_NOUNS}s?,\s+|"
    r"in this [\w' -]{1,30},\s+|"
    rf"(?:the|this) {_NOUNS} (?:is about|describes|discusses|reports|explains|tells(?: us)? "
    rf"(?:about|how|that)|talks about|says|shows|highlights|focuses on|is a summary of|contains|"
    rf"summari[sz]es)\s+(?:that |how )?)",
    re.IGNORECASE,
)


def _normal(text: str) -> str:
    return _LEADING.sub("", text).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _label(opening: str, kind: str) -> bool:
    """True when the opening is a label: at most 6 words naming the text or task, then ':'.

    For the story kind "story" and "tale" name the document itself, so they
    count only beside another label word ("Story summary:", not "The story:").
    """
    match = _LABEL.match(opening)
    if match is None:
        return False
    words = re.split(r"[\s*_]+", match.group(1).lower().replace("-", "").strip(" *_"))
    neutral = _LABEL_FILLERS | _STORY_WORDS if kind == "story" else _LABEL_FILLERS
    # a number beside a label word counts it ("Sentence 1:", "Point 2:")
    named = [w for w in words if w not in neutral and not w.isdigit()]
    return len(words) <= _LABEL_WORDS and bool(named) and all(w in _LABEL_NAMES for w in named)


def _echoes(opening: str, prompt_texts: Sequence[str]) -> bool:
    """True when the opening's first 6 words are a run of words of the prompt's instruction."""
    head = _words(opening)[:6]
    if len(head) < 6:
        return False
    needle = " ".join(head)
    return any(needle in " ".join(_words(p)) for p in prompt_texts)


def off_task_opening(
    text: str, *, kind: str = "document", prompt_texts: Sequence[str] = ()
) -> bool:
    """Tell whether a summary opens with meta text instead of the summary itself.

    Args:
        text: the summary (only its opening is read).
        kind: the document's kind; "The story..." and "In this tale..." are
            meta for every kind but ``"story"``; for ``"news"``, "A ... story"
            (a news story, reported) is not.
        prompt_texts: the instructions the model was given, without the
            document; an opening whose first 6 words repeat a run of them
            echoes the prompt.

    Returns:
        True for an opening about the text ("The document is", "The text",
        "Here's", "In this summary", "The original message"), about the task
        ("Your answer should be..."), a label (at most 6 words, each naming
        the text or the task or a determiner, then a colon: "Summary:", "A
        news article:", "Key points:", "The short version:"; for the story
        kind "story" alone is no label), an echo of the prompt, or, for a
        non-story, "The story"; False otherwise, and for an empty text. A
        colon after other words is content: a dateline ("LONDON:",
        "Aintree, April 11:"), a score, a name, a kicker ("Breaking:").
    """
    opening = _normal(text)
    if not opening:
        return False
    if _label(opening, kind):
        return True
    if _STORY_OPENING.match(opening) and not (kind == "news" and _A_STORY.match(opening)):
        return kind != "story"
    return bool(_META.match(opening)) or _echoes(opening, prompt_texts)


def trim_meta_opening(
    text: str, *, kind: str = "document", prompt_texts: Sequence[str] = ()
) -> str:
    """Remove a meta opening: its lead-in ("Here's the summary:") or its first sentences.

    A first sentence with a lead-in (up to a colon, "In this article, ", "The
    text describes how ") keeps what follows it, capitalized; one that is
    meta through and through is dropped, as are the next ones while they are
    meta too. A text that would be left with no words is returned as it is
    (an empty summary is worse than a meta one; the caller counts it).

    Returns:
        The text without its meta opening; ``text`` unchanged when it does
        not open with one (:func:`off_task_opening`).
    """
    rest = _normal(text)
    while rest and off_task_opening(rest, kind=kind, prompt_texts=prompt_texts):
        cut = _LEAD_IN.sub("", rest, count=1)
        if cut != rest and cut.strip():
            rest = _normal(cut)
            rest = rest[:1].upper() + rest[1:]
            continue
        parts = _SENTENCE.split(rest, maxsplit=1)
        rest = _normal(parts[1]) if len(parts) > 1 else ""
    return rest if rest.split() else text


def _texts(value: PromptValue) -> list[str]:
    return [
        m.content for m in value.to_messages() if m.type == "human" and isinstance(m.content, str)
    ]


async def _replies(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """The reply's text from ``{"reply": ...}`` chunks (the passthrough's chunks hold no reply)."""
    async for chunk in chunks:
        text = chunk.get("reply")
        if text:
            yield text


async def _opening(chunks: AsyncIterator[str]) -> str:
    """Read chunks until the first sentence end or :data:`OPENING_WORDS` words, or the end."""
    held = ""
    async for chunk in chunks:
        held += chunk
        text = held.strip()
        # The finisher passes on a summary's first sentence without the space
        # after it (that comes with the next sentence, once judged no repeat).
        if len(text.split()) >= OPENING_WORDS or _SENTENCE.search(text) or _ENDED.search(text):
            break
    return held


def on_task(
    prompt: Runnable[dict[str, Any], PromptValue],
    reply: Runnable[PromptValue, str],
    *,
    kind: str,
    max_words: int,
    name: str = "on_task",
) -> Runnable[dict[str, Any], str]:
    """Wrap a summary step: prompt → ``reply`` (model and finish), asked again when off task.

    Args:
        prompt: the summary prompt (its variables in, a prompt value out).
        reply: the model and the finishing step (prompt value in, text out).
        kind: the document's kind, for :func:`off_task_opening`.
        max_words: the asked length, repeated in the retry's request.
        name: the step's run name.

    Returns:
        ``Runnable[dict, str]``: the prompt's variables in, the summary out.
        Under ``astream`` the model streams and the summary is passed on once
        its opening is judged; under ``ainvoke`` the model is invoked (it
        streams only when a handler asks for tokens, as before). An off-task
        first reply is dropped and the model asked once more through
        ``RETRY_PROMPT``; a second off-task reply is trimmed
        (:func:`trim_meta_opening`). Each retry is noted for the record
        (a ``NOTE_EVENT`` custom event, module docstring).
    """
    retry_reply: Runnable[dict[str, Any], str] = RETRY_PROMPT | reply
    # The variables pass through (first chunk), then the reply's text as it comes.
    first = RunnablePassthrough.assign(reply=prompt | reply)

    async def judge(
        chunks: AsyncIterator[dict[str, Any]], config: RunnableConfig
    ) -> AsyncIterator[str]:
        variables: dict[str, Any] = {}
        texts = _replies(_keep_variables(chunks, variables))
        held = await _opening(texts)
        # The prompt without the document: an opening repeating the document is no echo.
        blank = {k: "" if isinstance(v, str) else v for k, v in _documents(variables).items()}
        instructions = _texts(prompt.invoke(blank))
        if not off_task_opening(held, kind=kind, prompt_texts=instructions):
            yield held
            async for text in texts:
                yield text
            return
        await texts.aclose()  # type: ignore[attr-defined]  # an async generator: ends the call
        request = (await prompt.ainvoke(_documents(variables), config)).to_messages()
        again = await retry_reply.ainvoke(
            {"request": request, "reply": held.strip(), "max_words": max_words}, config
        )
        still = off_task_opening(again, kind=kind, prompt_texts=instructions)
        note = {"off_task_retries": 1, "off_task_trimmed": int(still)}
        await adispatch_custom_event(NOTE_EVENT, note, config=config)
        yield trim_meta_opening(again, kind=kind, prompt_texts=instructions) if still else again

    # langchain-core passes `config` to a transform that takes it (accepts_config); its
    # type hints leave the argument out
    transform = cast("Callable[[AsyncIterator[dict[str, Any]]], AsyncIterator[str]]", judge)
    step: Runnable[dict[str, Any], str] = first | RunnableGenerator(transform, name=name)
    return step


async def _keep_variables(
    chunks: AsyncIterator[dict[str, Any]], variables: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """Pass the chunks on, keeping every key but the reply in ``variables``."""
    async for chunk in chunks:
        variables.update((k, v) for k, v in chunk.items() if k != "reply")
        yield chunk


def _documents(variables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k != "reply"}
