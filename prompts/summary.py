"""Summary prompts, worded for what is summarized: a document, story, meeting, dialogue or news.

Input variables: the ``SUMMARY_PROMPTS`` (stuff) and ``MAP_PROMPTS`` take
``text`` and ``max_words``; the ``COMBINE_PROMPTS`` take ``summaries`` (the
chunk summaries, joined) and ``max_words``; ``RETRY_PROMPT`` takes
``request`` (the first prompt's messages), ``reply`` (the off-task reply)
and ``max_words``. Each mapping is keyed by document kind
(:data:`lc_async_pipelines.kinds.DocumentKind`); ``SUMMARY_PROMPT``,
``MAP_PROMPT`` and ``COMBINE_PROMPT`` are the ``"document"`` ones, which
speak of "the document" and its parts, never of a story.

``max_words`` is a target, asked for as "about N words": the chains cut an
overlong reply to at most 1.3N words (:mod:`lc_async_pipelines.summary`).
SmolLM2-135M writes 70-100 words for a news article whatever the wording; on 8
articles at N = 48, "about N words" left the finished summaries' median
closest to N (47.5 words; "in N words" 57, "in S sentences (about N words)"
50; all 8 within ±30% each time), so the prompts ask for that.

The instruction comes after the text and names what to start with (the
people or the subject), because the 135M model otherwise opens with text
about the text ("The document is...", "Here's a rewritten version...",
issue 23). The story wording keeps the plot question the SQuALITY references
answer.

The ``"news"`` stuff prompt differs: news is written as an inverted pyramid,
the main facts first (the "lead bias" that Zhu et al. 2021, "Leveraging Lead
Bias for Zero-shot Abstractive News Summarization", SIGIR, arXiv:1912.11602,
put to use, and the reason lead-N is a strong baseline), so the chain hands
it only the article's lead (its opening sentences, up to
:data:`lc_async_pipelines.summary.NEWS_LEAD_WORDS` words) and asks the model
to copy out the lead's most important sentences, about N words in all,
keeping names and numbers and adding nothing: extract, then compress, the
shape of sentence-compression summarizers (Knight and Marcu 2002,
"Summarization beyond sentence extraction", Artificial Intelligence 139(1)).
On the first 100 shared news articles (temperature 0, issue 23) this ask
reached 87% of lead-N on ROUGE-L where "shorten them into one summary"
reached 78-83%; asking for deletions only, "two most important sentences",
"word for word", or the lead cut to 80-100 words or to whole sentences
scored 65-87% and opened more summaries off task. No worked example: a
made-up one leaked its own facts into 2 of 20 summaries. ``text`` is then
the lead, not the whole article; what comes after the lead is not seen.
:data:`NEWS_PROMPTS` holds that ask first and four rewordings of it, the
candidates of a best-of-k news summary, in the order of their ROUGE-L alone
(87%, 85%, 82%, 83%, 83% of lead-N on those 100 articles).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

__all__ = [
    "COMBINE_PROMPT",
    "COMBINE_PROMPTS",
    "MAP_PROMPT",
    "MAP_PROMPTS",
    "NEWS_PROMPTS",
    "RETRY_PROMPT",
    "SUMMARY_PROMPT",
    "SUMMARY_PROMPTS",
]

_SYSTEM = "You write short, factual summaries. Use only facts from the text."

# kind: (what it is, what the summary says, what it starts with)
_WORDING: Final[dict[str, tuple[str, str, str]]] = {
    "document": ("document", "its main points", "the subject itself"),
    "news": (
        "news article",
        "what happened, to whom, where and when",
        "who or what the news is about",
    ),
    "story": ("story", "the plot: who does what and how it ends", "the main character"),
    "meeting": (
        "meeting transcript",
        "what was discussed and decided, and who will do what",
        "the people or the topic",
    ),
    "dialogue": ("conversation", "who says what and what they agree on", "the people by name"),
}


def _stuff(noun: str, says: str, start: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", _SYSTEM),
            (
                "human",
                f"{{text}}\n\nSummarize the {noun} above in about {{max_words}} words: {says}. "
                f"Start with {start}.",
            ),
        ]
    )


def _map(noun: str, says: str, start: str) -> ChatPromptTemplate:
    # The story keeps the wording its map-reduce was measured with ("what happens").
    ask = "what happens in this part" if noun == "story" else "this part"
    return ChatPromptTemplate.from_messages(
        [
            ("system", _SYSTEM),
            (
                "human",
                f"This is one part of a longer {noun}.\n\n{{text}}\n\n"
                f"Summarize {ask} in about {{max_words}} words. Start with {start}.",
            ),
        ]
    )


def _combine(noun: str, says: str, start: str) -> ChatPromptTemplate:
    ask = "the plot of the whole story" if noun == "story" else f"one summary of the whole {noun}"
    return ChatPromptTemplate.from_messages(
        [
            ("system", _SYSTEM),
            (
                "human",
                f"These are summaries of consecutive parts of one {noun}:\n\n{{summaries}}\n\n"
                f"Write {ask} in about {{max_words}} words: {says}. Start with {start}.",
            ),
        ]
    )


# The news asks: the chain hands over only the article's opening sentences
# (summary.NEWS_LEAD_WORDS) and asks for its key sentences copied out and
# shortened (module docstring). The first is the chain's; the others word the
# same ask differently, for best-of-k candidates (summary.build_summary_chain).
_NEWS_OPENING = "These are the opening sentences of a news article. "
_NEWS_ASKS: Final[tuple[str, ...]] = (
    "Copy out its most important sentences, about {max_words} words in all, keeping their "
    "names and numbers. Do not add anything.",
    "Copy out its most important sentences, deleting the less important words, about "
    "{max_words} words in all. Do not add anything.",
    "Copy out its two most important sentences, shortened to about {max_words} words in all, "
    "keeping their names and numbers.",
    "Copy out its two or three most important sentences, about {max_words} words in all, "
    "keeping their names and numbers. Do not add anything.",
    "Copy out its most important sentences word for word, about {max_words} words in all. "
    "Do not add anything.",
)


def _news_lead(ask: str) -> ChatPromptTemplate:
    # News is an inverted pyramid (its main facts come first), so the model
    # sees the article's lead only and copies out its key sentences (module docstring).
    return ChatPromptTemplate.from_messages(
        [("system", _SYSTEM), ("human", "{text}\n\n" + _NEWS_OPENING + ask)]
    )


NEWS_PROMPTS: Final[tuple[ChatPromptTemplate, ...]] = tuple(_news_lead(a) for a in _NEWS_ASKS)
SUMMARY_PROMPTS: Final[Mapping[str, ChatPromptTemplate]] = MappingProxyType(
    {kind: NEWS_PROMPTS[0] if kind == "news" else _stuff(*w) for kind, w in _WORDING.items()}
)
MAP_PROMPTS: Final[Mapping[str, ChatPromptTemplate]] = MappingProxyType(
    {kind: _map(*w) for kind, w in _WORDING.items()}
)
COMBINE_PROMPTS: Final[Mapping[str, ChatPromptTemplate]] = MappingProxyType(
    {kind: _combine(*w) for kind, w in _WORDING.items()}
)
SUMMARY_PROMPT = SUMMARY_PROMPTS["document"]
MAP_PROMPT = MAP_PROMPTS["document"]
COMBINE_PROMPT = COMBINE_PROMPTS["document"]

# The first request, the off-task reply shown as what not to do, and the ask again.
RETRY_PROMPT = ChatPromptTemplate.from_messages(
    [
        MessagesPlaceholder("request"),
        ("ai", "{reply}"),
        (
            "human",
            "No. That talks about the text instead of summarizing it. Write only the "
            "summary, in about {max_words} words, starting with who or what it is about. "
            'Do not write "The text", "The document", "Here is" or "This summary".',
        ),
    ]
)
