"""News-analysis prompts.

Input variables: ``NEWS_ANALYSIS_PROMPT`` takes ``article`` (title and text)
and ``max_words`` (the summary's length in words). ``NEWS_AGENT_PROMPT`` takes
``url`` and ``max_words`` and leaves room for the agent's tool calls
(``messages``).
"""

from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

__all__ = ["NEWS_AGENT_PROMPT", "NEWS_ANALYSIS_PROMPT"]

_SYSTEM = (
    "You analyse news articles. Use only facts stated in the article. "
    "Answer with the requested JSON fields."
)

_TASK = (
    "Analyse the article: a summary of about {max_words} words; the main topic "
    "in one to three words; the tone (negative, neutral or positive); three key "
    "facts, each one short sentence; and the people, organizations and places it names."
)

NEWS_ANALYSIS_PROMPT = ChatPromptTemplate.from_messages(
    [("system", _SYSTEM), ("human", "{article}\n\n" + _TASK)]
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
