"""The built-in pipelines, registered by name in ``pyproject.toml``'s entry points.

Their options and defaults are their factories' keyword arguments
(:meth:`~lc_async_pipelines.registry.PipelineSpec.defaults`).
"""

from __future__ import annotations

from lc_async_pipelines.news import build_news_analysis_chain
from lc_async_pipelines.registry import PipelineSpec
from lc_async_pipelines.story import build_story_chain
from lc_async_pipelines.summary import build_auto_summary_chain

__all__ = ["NEWS", "STORY", "SUMMARY"]

STORY = PipelineSpec(
    name="story",
    factory=build_story_chain,
    description="A short story about a topic.",
    input_label="topic",
    max_input_chars=2_000,
    example="a lighthouse keeper who collects storms",
)

SUMMARY = PipelineSpec(
    name="summary",
    factory=build_auto_summary_chain,
    description="A summary of a document; long ones are summarized by map-reduce.",
    input_label="document",
    max_input_chars=200_000,
    splits_long_inputs=True,
    example="Paste a document to summarize: an article, a report, a chapter…",
)

NEWS = PipelineSpec(
    name="news",
    factory=build_news_analysis_chain,
    description="A news article's analysis: summary, topic, tone, key facts, names (JSON).",
    input_label="article",
    max_input_chars=60_000,
    example="Paste a news article's text: the city council voted on Tuesday to build…",
)
