"""Summary pipelines: stuff for a short document, map-reduce over chunks for a long one.

Map-reduce follows LangChain's summarization how-to (split, summarize each chunk
concurrently, combine, collapsing again while the combined summaries exceed one
chunk): https://python.langchain.com/docs/how_to/summarize_map_reduce/

Length: every factory's ``max_words`` (and ``map_words``, ``long_max_words``)
is a target N met within ±30%: the prompt asks for about N words, ``max_tokens``
leaves room for 1.3N words and the end of a sentence, and the last step
(:func:`lc_async_pipelines._finish.finish_to_length`) ends an overlong reply at
its last sentence end between 0.7N and 1.3N words, or, lacking one, after 1.3N
words with ``...``. A summary is never over ``floor(1.3N)`` words; one the
model ends below ``ceil(0.7N)`` words is continued once
(:func:`~lc_async_pipelines.lengthen.lengthen`), and kept as it then is.
Sentences repeating what the reply already said are left out first
(:mod:`lc_async_pipelines._repeats`). The option keeps its
name ``max_words`` for the command line, the service and saved settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast, get_args

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableSequence
from langchain_text_splitters import RecursiveCharacterTextSplitter

from lc_async_pipelines._finish import finish_to_length
from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._text import estimate_tokens, lead, max_tokens_for_target
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.best_of import best_of
from lc_async_pipelines.errors import ConfigurationError, RowError
from lc_async_pipelines.kinds import DocumentKind, SummaryKind, check_kind, guess_kind
from lc_async_pipelines.lengthen import lengthen as lengthen_short
from lc_async_pipelines.on_task import on_task
from lc_async_pipelines.prompts.summary import (
    COMBINE_PROMPTS,
    MAP_PROMPTS,
    NEWS_PROMPTS,
    SUMMARY_PROMPTS,
)
from lc_async_pipelines.runner.notes import NOTE_EVENT

__all__ = [
    "CANDIDATE_TEMPERATURE",
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_STUFF_MAX_TOKENS",
    "MAX_CANDIDATES",
    "NEWS_LEAD_WORDS",
    "NEWS_TEMPERATURE",
    "build_auto_summary_chain",
    "build_map_reduce_summary_chain",
    "build_summary_chain",
    "split_into_chunks",
]

# SmolLM2 slots get 4096 tokens here: a chunk, the prompt and the reply fit.
DEFAULT_CHUNK_TOKENS = 1500
# A document up to this many estimated tokens is stuffed into one prompt.
DEFAULT_STUFF_MAX_TOKENS = 3000
_MAX_COLLAPSE_ROUNDS = 4
# A news article's stuff prompt gets its lead: the first paragraphs up to this many words.
NEWS_LEAD_WORDS = 150
# News summaries are decoded greedily: they restate the lead's facts (issue 23,
# docs/benchmarks.md); the embedded model's repeat and DRY penalties still apply.
NEWS_TEMPERATURE = 0.0
# Best-of-k: candidates past a kind's own wordings sample its first wording at this temperature.
CANDIDATE_TEMPERATURE = 0.7
MAX_CANDIDATES = 8
# More chunks than this in one document is a RowError unless raised: a
# 1,000,000-character row would otherwise make about 280 calls without a word.
DEFAULT_MAX_CHUNKS = 64


def split_into_chunks(text: str, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[str]:
    """Split ``text`` into chunks of at most about ``chunk_tokens`` estimated tokens.

    Splits on paragraphs, then lines, then sentences and words
    (``langchain_text_splitters.RecursiveCharacterTextSplitter``), with a 5% overlap.
    """
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=chunk_tokens // 20,
        length_function=estimate_tokens,
        separators=["\n\n", "\n", ". ", " ", ""],
    )
    return splitter.split_text(text)


def _summary_step(
    llm: ChatModel,
    prompt: Runnable[dict[str, Any], PromptValue],
    max_words: int,
    *,
    kind: str,
    name: str,
    temperature: float | None = None,
    document: str = "text",
    lengthen: bool = True,
) -> Runnable[dict[str, Any], str]:
    """Return prompt → model (``max_tokens`` sized from ``max_words``) → text, kept on task.

    A reply kept on task but ended under 0.7N words is lengthened once from
    the sentences of the prompt's ``document`` variable it left out
    (:func:`~lc_async_pipelines.lengthen.lengthen`). ``temperature``, when
    given, overrides the model's own for this step's calls.
    """
    sampling: dict[str, Any] = {} if temperature is None else {"temperature": temperature}

    def reply_for(words: int) -> Runnable[PromptValue, str]:
        max_tokens = max_tokens_for_target(words)
        model: Runnable[PromptValue, Any] = llm.bind(max_tokens=max_tokens, **sampling)
        return model | finish_to_length(words, max_tokens)

    kept = on_task(prompt, reply_for(max_words), kind=kind, max_words=max_words, name=name)
    if not lengthen:
        return kept
    return lengthen_short(
        kept, prompt, reply_for, kind=kind, max_words=max_words, document=document
    )


def _kind_of(kind: object) -> SummaryKind:
    try:
        return check_kind(kind)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _by_kind(
    kind: SummaryKind, build: Callable[[DocumentKind], Runnable[str, str]], name: str
) -> Runnable[str, str]:
    """The chain for ``kind``; for ``"auto"``, a router to the chain of the guessed kind.

    Either way the kind is noted in the record (a :data:`NOTE_EVENT` custom
    event, ``{"kind", "kind_guessed"}``).
    """
    kinds: tuple[DocumentKind, ...] = get_args(DocumentKind)
    chains = {k: build(k) for k in (kinds if kind == "auto" else (kind,))}

    async def route(text: str, config: RunnableConfig) -> Runnable[str, str]:
        # A RunnableLambda returning a Runnable runs it: invoked by ainvoke,
        # streamed by astream.
        chosen: DocumentKind = guess_kind(text) if kind == "auto" else kind
        note = {"kind": chosen, "kind_guessed": kind == "auto"}
        await adispatch_custom_event(NOTE_EVENT, note, config=config)
        return chains[chosen]

    router = cast("Runnable[str, str]", RunnableLambda(route, name=name))
    return router.with_types(input_type=str, output_type=str)


def build_summary_chain(
    llm: ChatModel,
    *,
    max_words: int = 60,
    kind: SummaryKind = "auto",
    candidates: int = 1,
    lengthen: bool = True,
) -> Runnable[str, str]:
    """Build the stuff summary chain: the whole document in one prompt.

    Args:
        llm: the chat model (injected, never built here).
        max_words: target summary length N in words, met within ±30%: never
            over ``floor(1.3N)`` words, and at least ``ceil(0.7N)`` unless the
            model ends sooner twice (the module's length rule: a short
            summary is continued once, at one more call).
        kind: what the document is, for the prompt's wording
            (:data:`~lc_async_pipelines.kinds.KINDS`); ``"auto"`` guesses it
            from the text (:func:`~lc_async_pipelines.kinds.guess_kind`). A
            ``"news"`` article is summarized from its lead only: its first
            paragraphs up to :data:`NEWS_LEAD_WORDS` words, which the model
            shortens into the summary at :data:`NEWS_TEMPERATURE` (news puts
            its main facts first; :mod:`lc_async_pipelines.prompts.summary`).
        candidates: summaries written per document, 1 to :data:`MAX_CANDIDATES`;
            over 1, the best is kept (faithful to what the model saw and
            agreeing with the others: :func:`~lc_async_pipelines.best_of.best_of`),
            at that many model calls a document. Candidate i uses the kind's i-th wording
            (news has five: ``NEWS_PROMPTS``); past its wordings, the first
            wording sampled at :data:`CANDIDATE_TEMPERATURE`.
        lengthen: whether a summary the model ends under ``ceil(0.7N)``
            words is lengthened once, at one more call
            (:func:`~lc_async_pipelines.lengthen.lengthen`). The command line
            turns it off for Batch API runs, where the call would be another
            batch stage.

    Returns:
        ``Runnable[str, str]`` (input and output schemas: strings): document
        text in, summary out, streamed by ``astream`` as the model writes it
        once its opening is judged on task (:func:`~lc_async_pipelines.on_task.on_task`:
        an off-task reply is asked for again once, then trimmed). The kind
        and the off-task retries are noted in the record (custom events).
        With ``candidates`` over 1, ``astream`` gives the chosen summary in
        one chunk once all are written.

    Raises:
        ConfigurationError: ``max_words`` is below 1, ``kind`` is not one of
            the kinds, or ``candidates`` is not a whole number from 1 to
            :data:`MAX_CANDIDATES`.
    """
    chosen = _kind_of(kind)
    _check_candidates(candidates)

    def build(k: DocumentKind) -> Runnable[str, str]:
        def inputs(text: str) -> dict[str, Any]:
            return {"text": lead(text, NEWS_LEAD_WORDS) if k == "news" else text,
                    "max_words": max_words}  # fmt: skip

        to_vars: Runnable[str, dict[str, Any]] = inline(inputs, name="summary_inputs")
        steps = _candidate_steps(llm, k, max_words, candidates, lengthen=lengthen)
        step = best_of(steps, name="summary_best_of")
        chain: RunnableSequence[str, str] = RunnableSequence(to_vars, step, name=f"summary_{k}")
        return chain

    return _by_kind(chosen, build, "summary")


def _candidate_steps(
    llm: ChatModel, kind: DocumentKind, max_words: int, candidates: int, *, lengthen: bool
) -> list[Runnable[dict[str, Any], str]]:
    """Return the stuff chain's summary steps: the kind's wordings, then samples of the first."""
    wordings = NEWS_PROMPTS if kind == "news" else (SUMMARY_PROMPTS[kind],)
    own = NEWS_TEMPERATURE if kind == "news" else None
    return [
        _summary_step(
            llm,
            wordings[i] if i < len(wordings) else wordings[0],
            max_words,
            kind=kind,
            name="summary_text" if i == 0 else f"summary_candidate_{i}",
            temperature=own if i < len(wordings) else CANDIDATE_TEMPERATURE,
            lengthen=lengthen,
        )
        for i in range(candidates)
    ]


def _check_candidates(candidates: object) -> None:
    if (
        isinstance(candidates, bool)
        or not isinstance(candidates, int)
        or not 1 <= candidates <= MAX_CANDIDATES
    ):
        msg = f"candidates must be a whole number from 1 to {MAX_CANDIDATES}, got {candidates!r}"
        raise ConfigurationError(msg)


def build_map_reduce_summary_chain(
    llm: ChatModel,
    *,
    max_words: int = 120,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    map_words: int = 60,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
    kind: SummaryKind = "auto",
    lengthen: bool = True,
) -> Runnable[str, str]:
    """Build the map-reduce summary chain for documents longer than the model's context.

    The document is split into chunks of about ``chunk_tokens`` estimated tokens;
    each chunk is summarized concurrently (``abatch`` under the caller's
    ``max_concurrency``); the chunk summaries are combined into one. While the
    joined summaries are longer than a chunk they are collapsed again (at most
    4 rounds). Only the combine call streams through ``astream``; the chunk
    summaries are internal (their tokens still reach the callbacks). Chunk
    summaries and the combined one are each kept on task as in
    :func:`build_summary_chain`.

    Args:
        llm: the chat model.
        max_words: target length N of the final summary in words, met within
            ±30% as in :func:`build_summary_chain`.
        chunk_tokens: chunk size in estimated tokens.
        map_words: target length in words of each chunk summary (same rule).
        max_chunks: most chunks one document may split into; one with more is
            a :class:`~lc_async_pipelines.errors.RowError` before any call
            (each chunk is a call, and collapsing adds more).
        kind: what the document is, for the prompts' wording, as in
            :func:`build_summary_chain` (``"auto"``: guessed from the whole text).
        lengthen: whether a chunk summary or the combined one ended short is
            lengthened once, as in :func:`build_summary_chain`.

    Returns:
        ``Runnable[str, str]`` (input and output schemas: strings): document
        text in, summary out.

    Raises:
        ConfigurationError: ``max_words`` or ``map_words`` is below 1,
            ``max_chunks`` is not a whole number of at least 1, or ``kind`` is
            not one of the kinds.
        RowError: on invocation, a document of more than ``max_chunks`` chunks;
            the message says how many and the option that raises the limit.
    """
    _check_max_chunks(max_chunks)
    chosen = _kind_of(kind)

    def build(k: DocumentKind) -> Runnable[str, str]:
        map_chain = _summary_step(
            llm, MAP_PROMPTS[k], map_words, kind=k, name="map_summary", lengthen=lengthen
        )

        async def summarize_chunks(text: str, config: RunnableConfig) -> dict[str, Any]:
            chunks = _chunks_within_limit(text, chunk_tokens, max_chunks)
            for _ in range(_MAX_COLLAPSE_ROUNDS):
                summaries = await map_chain.abatch(
                    [{"text": c, "max_words": map_words} for c in chunks], config
                )
                joined = "\n\n".join(s for s in summaries if s)
                if estimate_tokens(joined) <= chunk_tokens:
                    break
                chunks = split_into_chunks(joined, chunk_tokens)
            return {"summaries": joined, "max_words": max_words}

        combine = _summary_step(
            llm,
            COMBINE_PROMPTS[k],
            max_words,
            kind=k,
            name="combine_summary",
            document="summaries",
            lengthen=lengthen,
        )
        chain: RunnableSequence[str, str] = RunnableSequence(
            RunnableLambda(summarize_chunks, name="summarize_chunks"),
            combine,
            name=f"map_reduce_summary_{k}",
        )
        return chain

    return _by_kind(chosen, build, "map_reduce_summary")


def _chunks_within_limit(text: str, chunk_tokens: int, max_chunks: int) -> list[str]:
    """The document's chunks; a RowError when there are more than ``max_chunks``."""
    chunks = split_into_chunks(text, chunk_tokens)
    if len(chunks) > max_chunks:
        msg = (
            f"the document splits into {len(chunks)} chunks of about {chunk_tokens} "
            f"tokens, over the limit of {max_chunks} (one model call each, and more to "
            "combine them); raise max_chunks (--max-chunks) to summarize it"
        )
        raise RowError(msg)
    return chunks


def build_auto_summary_chain(
    llm: ChatModel,
    *,
    max_words: int = 60,
    long_max_words: int = 120,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    stuff_max_tokens: int = DEFAULT_STUFF_MAX_TOKENS,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
    kind: SummaryKind = "auto",
    candidates: int = 1,
    lengthen: bool = True,
) -> Runnable[str, str]:
    """Build a chain that stuffs short documents and map-reduces long ones.

    Args:
        llm: the chat model.
        max_words: target summary length in words for a stuffed document (±30%,
            as in :func:`build_summary_chain`).
        long_max_words: target summary length in words for a map-reduced
            document (same rule).
        chunk_tokens: map-reduce chunk size in estimated tokens.
        stuff_max_tokens: longest document (estimated tokens) stuffed into one prompt.
        max_chunks: most chunks a map-reduced document may split into, as
            :func:`build_map_reduce_summary_chain` (a ``RowError`` past it).
        kind: what the document is (:data:`~lc_async_pipelines.kinds.KINDS`);
            ``"auto"`` guesses it from the text, and the record notes the guess.
        candidates: summaries written per stuffed document, the best
            kept (as :func:`build_summary_chain`); map-reduce writes one.
        lengthen: whether a summary ended short is lengthened once (as
            :func:`build_summary_chain`).

    Returns:
        ``Runnable[str, str]`` (input and output schemas: strings): document
        text in, summary out, streamed by ``astream`` through the chosen chain.

    Raises:
        ConfigurationError: ``max_words`` or ``long_max_words`` is below 1,
            ``max_chunks`` below 1, ``kind`` not one of the kinds, or
            ``candidates`` out of range.
        RowError: on invocation, a document of more than ``max_chunks`` chunks.
    """
    stuff = build_summary_chain(
        llm, max_words=max_words, kind=kind, candidates=candidates, lengthen=lengthen
    )
    map_reduce = build_map_reduce_summary_chain(
        llm,
        max_words=long_max_words,
        chunk_tokens=chunk_tokens,
        max_chunks=max_chunks,
        kind=kind,
        lengthen=lengthen,
    )

    def route(text: str) -> Runnable[str, str]:
        # A RunnableLambda returning a Runnable runs it: invoked by ainvoke,
        # streamed by astream.
        return stuff if estimate_tokens(text) <= stuff_max_tokens else map_reduce

    # typed as what it returns once the chosen chain has run
    router = cast("Runnable[str, str]", inline(route, name="auto_summary"))
    return router.with_types(input_type=str, output_type=str)


def _check_max_chunks(max_chunks: object) -> None:
    if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1:
        msg = f"max_chunks must be a whole number of at least 1, got {max_chunks!r}"
        raise ConfigurationError(msg)
