"""Summary prompts.

Input variables: ``SUMMARY_PROMPT`` and ``MAP_PROMPT`` take ``text`` and
``max_words``; ``COMBINE_PROMPT`` takes ``summaries`` (the chunk summaries,
joined) and ``max_words``.
"""

from langchain_core.prompts import ChatPromptTemplate

__all__ = ["COMBINE_PROMPT", "MAP_PROMPT", "SUMMARY_PROMPT"]

_SYSTEM = "You write short, factual summaries. Use only facts from the text."

SUMMARY_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        ("human", "{text}\n\nSummarize the text above in at most {max_words} words."),
    ]
)

MAP_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "This is one part of a longer story.\n\n{text}\n\n"
            "Summarize what happens in this part in at most {max_words} words.",
        ),
    ]
)

COMBINE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "These are summaries of consecutive parts of one story:\n\n{summaries}\n\n"
            "Write the plot of the whole story in at most {max_words} words.",
        ),
    ]
)
