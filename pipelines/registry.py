"""The pipelines an app can serve by name, with their input limits and chain factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.runnables import Runnable

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.story import build_story_chain
from lc_async_pipelines.summary import build_auto_summary_chain

__all__ = ["PIPELINES", "PipelineSpec"]


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline as a service offers it.

    Attributes:
        name: URL name (``/v1/pipelines/{name}/...``).
        description: one line for the page and the API listing.
        input_label: what the input is (``"topic"``, ``"document"``).
        max_input_chars: longest accepted input, characters.
        default_max_words: output length when the request gives none, words.
        build: ``build(llm, max_words) -> Runnable[str, str]``.
    """

    name: str
    description: str
    input_label: str
    max_input_chars: int
    default_max_words: int
    build: Callable[[ChatModel, int], Runnable[str, str]]


def _story(llm: ChatModel, max_words: int) -> Runnable[str, str]:
    return build_story_chain(llm, max_words=max_words)


def _summary(llm: ChatModel, max_words: int) -> Runnable[str, str]:
    return build_auto_summary_chain(llm, max_words=max_words)


PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
    for spec in (
        PipelineSpec(
            name="story",
            description="A short story about a topic.",
            input_label="topic",
            max_input_chars=2_000,
            default_max_words=250,
            build=_story,
        ),
        PipelineSpec(
            name="summary",
            description="A summary of a document; long ones are summarized by map-reduce.",
            input_label="document",
            max_input_chars=200_000,
            default_max_words=60,
            build=_summary,
        ),
    )
}
