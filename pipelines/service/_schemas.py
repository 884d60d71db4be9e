"""Request and response bodies of the API (Pydantic models, so FastAPI checks them).

An input is text or a JSON object: a pipeline whose chain takes a string
(story, summary) gets text; one whose chain takes an object (a prompt with
several variables) gets an object. Which one a pipeline takes is checked per
pipeline by the routes, against the chain's own input schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from lc_async_pipelines.kinds import SummaryKind

__all__ = [
    "MAX_BATCH",
    "MAX_CANDIDATES_LIMIT",
    "MAX_INPUT_CHARS",
    "MAX_WORDS_LIMIT",
    "BatchRequest",
    "InvokeRequest",
    "InvokeResponse",
    "PipelineInfo",
    "PipelineInput",
    "Usage",
]

MAX_WORDS_LIMIT = 1_000
MAX_CANDIDATES_LIMIT = 5
MAX_BATCH = 64
MAX_INPUT_CHARS = 200_000


def _nonblank(value: str) -> str:
    if not value.strip():
        msg = "must not be empty or only whitespace"
        raise ValueError(msg)
    return value


def _input_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "object"
    return None


_TextOfLength = Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS)]
Text = Annotated[_TextOfLength, AfterValidator(_nonblank)]
"""A text input: 1 to 200,000 characters, not only whitespace."""


_AsInputType = Discriminator(
    _input_kind,
    custom_error_type="input_type",
    custom_error_message="Input should be a string or a JSON object",
)

PipelineInput = Annotated[
    Annotated[Text, Tag("text")] | Annotated[dict[str, Any], Tag("object")], _AsInputType
]
"""One input: text, or a JSON object (for a chain whose input is an object)."""

# Blank texts in a batch are refused by BatchRequest, naming the input's index.
_BatchInput = Annotated[
    Annotated[_TextOfLength, Tag("text")] | Annotated[dict[str, Any], Tag("object")],
    _AsInputType,
]

MaxWords = Annotated[int | None, Field(ge=10, le=MAX_WORDS_LIMIT)]
# Best-of-k summaries, at k model calls an input: capped lower than the library's 8.
Candidates = Annotated[int | None, Field(ge=1, le=MAX_CANDIDATES_LIMIT)]
# What the document is, for a pipeline taking the ``kind`` option (the summary).
Kind = SummaryKind | None


class InvokeRequest(BaseModel):
    """One input for a pipeline.

    Attributes:
        input: the topic or document, 1 to 200,000 characters (each pipeline
            may accept less: ``GET /v1/pipelines`` lists its ``max_input_chars``),
            or a JSON object for a pipeline whose input is an object (its
            ``input_schema`` in ``GET /v1/pipelines``).
        max_words: target output length in words (summaries: within ±30%, never over
            1.3x; default: the pipeline's); only
            for a pipeline that takes the ``max_words`` option.
        kind: what the document is, for a pipeline that takes the ``kind``
            option (the summary: ``auto``, the default, guesses it; the
            response's ``notes.kind`` says which was used).
        candidates: summaries written for a short document, 1 to 5, the
            best kept (faithful to the document, agreeing with the others;
            one model call each; ``notes.candidate_chosen`` says which); for
            a pipeline that takes the ``candidates`` option (the summary,
            default 1).
    """

    model_config = ConfigDict(extra="forbid")

    input: PipelineInput
    max_words: MaxWords = None
    kind: Kind = None
    candidates: Candidates = None


class BatchRequest(BaseModel):
    """Up to 64 inputs for a pipeline, run concurrently within the shared budget.

    Attributes:
        inputs: texts or JSON objects, as :attr:`InvokeRequest.input`.
        max_words: target output length in words, for every input (summaries: within
            ±30%, never over 1.3x).
        kind: what every document is, as :attr:`InvokeRequest.kind`.
        candidates: summaries written per short document, as
            :attr:`InvokeRequest.candidates`.
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[_BatchInput] = Field(min_length=1, max_length=MAX_BATCH)
    max_words: MaxWords = None
    kind: Kind = None
    candidates: Candidates = None

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, values: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for i, value in enumerate(values):
            if isinstance(value, str) and not value.strip():
                msg = f"inputs[{i}] must not be empty or only whitespace"
                raise ValueError(msg)
        return values


class Usage(BaseModel):
    """Tokens over all model calls of a request."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class InvokeResponse(BaseModel):
    """A pipeline's output with its figures (seconds, tokens).

    Attributes:
        pipeline: the pipeline's name.
        output: the chain's output: text, or a JSON value for structured output.
        usage: tokens over all model calls.
        latency_s: wall time, all attempts included, seconds.
        ttft_s: time to the first token of the first model call, seconds.
        calls: model calls made.
        attempts: attempts made (retries of transient errors included).
        notes: what the chain noted, e.g. the summary's ``kind`` (guessed or
            given), ``off_task_retries``, ``repeats_dropped`` and
            ``lengthened``; empty when nothing.
    """

    pipeline: str
    output: Any
    usage: Usage
    latency_s: float
    ttft_s: float | None
    calls: int
    attempts: int
    notes: dict[str, Any] = Field(default_factory=dict)


class PipelineInfo(BaseModel):
    """A pipeline as ``GET /v1/pipelines`` lists it.

    Attributes:
        name: the name in ``/v1/pipelines/{name}/...``.
        description: one line.
        input_label: what one input is (``"topic"``, ``"document"``...).
        max_input_chars: the longest input accepted, characters (an object
            input is counted as its JSON text).
        options: the factory's keyword options and their defaults; of them,
            a request may set ``max_words``, ``kind`` and ``candidates``.
        input_schema: JSON Schema of the chain's input (``{"type": "string"}``
            for text, an object schema for a prompt with several variables).
        example: an example input, the page's placeholder ("" when none).
    """

    name: str
    description: str
    input_label: str
    max_input_chars: int
    options: dict[str, Any]
    input_schema: dict[str, Any]
    example: str = ""
