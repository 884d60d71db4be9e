"""Story prompts.

Input variables: ``STORY_PROMPT`` takes ``topic`` and ``max_words``;
``OUTLINE_PROMPT`` takes ``topic``; ``STORY_FROM_OUTLINE_PROMPT`` takes
``topic``, ``outline`` and ``max_words``.
"""

from langchain_core.prompts import ChatPromptTemplate

__all__ = ["OUTLINE_PROMPT", "STORY_FROM_OUTLINE_PROMPT", "STORY_PROMPT"]

_SYSTEM = "You are a creative writer. You write vivid, original short stories in plain prose."

STORY_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        ("human", "Write a short story of about {max_words} words about {topic}."),
    ]
)

OUTLINE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "Write a three-point outline (beginning, middle, end) for a short story "
            "about {topic}. One line per point.",
        ),
    ]
)

STORY_FROM_OUTLINE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "Write a short story of about {max_words} words about {topic}, "
            "following this outline:\n{outline}",
        ),
    ]
)
