"""Prompt templates for the pipelines, kept apart from the code that runs them (no I/O here)."""

from lc_async_pipelines.prompts.news import (
    NEWS_AGENT_PROMPT,
    NEWS_ANALYSIS_PROMPT,
    NEWS_SHORT_SUMMARY,
    NEWS_TONE_PROMPT,
    NEWS_TONE_WORD_PROMPT,
)
from lc_async_pipelines.prompts.story import OUTLINE_PROMPT, STORY_FROM_OUTLINE_PROMPT, STORY_PROMPT
from lc_async_pipelines.prompts.summary import COMBINE_PROMPT, MAP_PROMPT, SUMMARY_PROMPT

__all__ = [
    "COMBINE_PROMPT",
    "MAP_PROMPT",
    "NEWS_AGENT_PROMPT",
    "NEWS_ANALYSIS_PROMPT",
    "NEWS_SHORT_SUMMARY",
    "NEWS_TONE_PROMPT",
    "NEWS_TONE_WORD_PROMPT",
    "OUTLINE_PROMPT",
    "STORY_FROM_OUTLINE_PROMPT",
    "STORY_PROMPT",
    "SUMMARY_PROMPT",
]
