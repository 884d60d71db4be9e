"""Summary prompts.

Input variables: ``SUMMARY_PROMPT`` and ``MAP_PROMPT`` take ``text`` and
``max_words``; ``COMBINE_PROMPT`` takes ``summaries`` (the chunk summaries,
joined) and ``max_words``.

``max_words`` is a target, asked for as "about N words": the chains cut an
overlong reply to at most 1.3N words (:mod:`lc_async_pipelines.summary`).
SmolLM2-135M writes 70-100 words for a news article whatever the wording; on 8
articles at N = 48, "about N words" left the finished summaries' median
closest to N (47.5 words; "in N words" 57, "in S sentences (about N words)"
50; all 8 within ±30% each time), so the prompts ask for that.
"""

from langchain_core.prompts import ChatPromptTemplate

__all__ = ["COMBINE_PROMPT", "MAP_PROMPT", "SUMMARY_PROMPT"]

_SYSTEM = "You write short, factual summaries. Use only facts from the text."

SUMMARY_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        ("human", "{text}\n\nSummarize the text above in about {max_words} words."),
    ]
)

MAP_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "This is one part of a longer story.\n\n{text}\n\n"
            "Summarize what happens in this part in about {max_words} words.",
        ),
    ]
)

COMBINE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "These are summaries of consecutive parts of one story:\n\n{summaries}\n\n"
            "Write the plot of the whole story in about {max_words} words.",
        ),
    ]
)
