"""News-analysis prompts.

Input variables: ``NEWS_ANALYSIS_PROMPT`` takes ``article`` (title and text)
and ``max_words`` (the summary's length in words); ``NEWS_SHORT_SUMMARY``,
the human turn that asks again after a short summary, takes ``summary``,
``words`` and ``min_words``. ``NEWS_TONE_PROMPT`` takes ``article``: three
made-up examples (not from any evaluation set), then the question, answered as
JSON (``{"tone": ...}``); ``NEWS_TONE_WORD_PROMPT`` is the same with the
answers as bare words, so that the reply's first token is the tone (its
log-probabilities are read).
``NEWS_AGENT_PROMPT`` takes ``url`` and ``max_words`` and leaves room for the
agent's tool calls (``messages``).
"""

import json

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

__all__ = [
    "NEWS_AGENT_PROMPT",
    "NEWS_ANALYSIS_PROMPT",
    "NEWS_SHORT_SUMMARY",
    "NEWS_TONE_PROMPT",
    "NEWS_TONE_WORD_PROMPT",
]

_SYSTEM = (
    "You analyse news articles. Use only facts stated in the article. "
    "Answer with the requested JSON fields."
)

_SUMMARY = "a summary of about {max_words} words (at least ten words: what happened, who and where)"
_NAMES = (
    "three key facts, each one short sentence; and the people, organizations and places it names."
)

_TASK = (
    f"Analyse the article: {_SUMMARY}; the main topic in one to three words; "
    f"the tone (negative, neutral or positive); {_NAMES}"
)

NEWS_ANALYSIS_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "{article}\n\nAnalyse the article: "
            f"{_SUMMARY}; the main topic in one to three words; {_NAMES}",
        ),
    ]
)

NEWS_SHORT_SUMMARY = (
    'Your summary "{summary}" has {words} words. Write the analysis again, with a '
    "summary of at least {min_words} words that says what happened, who and where."
)

_TONE_SYSTEM = "You judge the tone of news articles."
_TONE_QUESTION = (
    "What is the tone of this news article? negative: harm, loss, crime, conflict, "
    "failure or criticism; positive: success, progress, help or celebration; "
    "neutral: plain facts, neither. Answer negative, neutral or positive."
)
# Made up for this prompt; none comes from an evaluation set.
_TONE_EXAMPLES = [
    (
        "Floods closed two bridges in Harlow on Monday and forced 300 families from "
        "their homes. One man died when his car was swept away, and the council "
        "warned of more rain.",
        "negative",
    ),
    (
        "The city council will publish its new bus timetable on 1 May. Three routes "
        "change their times, and the night bus keeps its current stops.",
        "neutral",
    ),
    (
        "A charity run raised 40,000 pounds for the children's hospital in Dunmore on "
        "Sunday, beating its target, and the hospital said it would buy two new scanners.",
        "positive",
    ),
]


def _escaped(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


NEWS_TONE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _TONE_SYSTEM),
        *[
            message
            for text, tone in _TONE_EXAMPLES
            for message in (
                ("human", f"{text}\n\n{_TONE_QUESTION}"),
                ("ai", _escaped(json.dumps({"tone": tone}))),
            )
        ],
        ("human", "{article}\n\n" + _TONE_QUESTION),
    ]
)

NEWS_TONE_WORD_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _TONE_SYSTEM),
        *[
            message
            for text, tone in _TONE_EXAMPLES
            for message in (("human", f"{text}\n\n{_TONE_QUESTION}"), ("ai", tone))
        ],
        ("human", "{article}\n\n" + _TONE_QUESTION),
    ]
)

NEWS_AGENT_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            _SYSTEM + " Call the tools to read the article at the URL and its "
            "metadata before you answer.",
        ),
        ("human", "Article URL: {url}\n\n" + _TASK),
        MessagesPlaceholder("messages", optional=True),
    ]
)
