"""The last step of every built-in chain: the model's reply as text, streamed, cleaned up.

The embedded small model is often cut by ``max_tokens`` mid-sentence, so a cut
reply is trimmed back to its last whole sentence. :func:`finish_reply` does
that without stopping the stream: it is a ``RunnableGenerator`` over the
model's message chunks that passes text on as it arrives and holds back only
what a cut could still remove.

The rule (the same for ``astream`` and ``ainvoke``, so the streamed pieces
always join to what ``ainvoke`` returns):

- **Clean-up.** Leading and trailing whitespace is dropped (whitespace is
  passed on only once text follows it).
- **Cut or not.** A reply is cut when the model says it stopped on the token
  limit: ``finish_reason`` (or ``stop_reason`` / ``done_reason`` /
  ``stopReason``) is ``"length"`` or ``"max_tokens"`` in the
  ``response_metadata`` of any chunk. Any other reason means it ended on its
  own: nothing is trimmed, final period or not. With no reason reported (fake
  models), a reply is cut when its ``usage_metadata`` output tokens reach
  ``max_tokens``, or, with no usage either, when its estimated tokens
  (:func:`~lc_async_pipelines._text.estimate_tokens`) do.
- **Trim, in the last stretch only.** A cut reply ends at its last sentence
  end (``.``, ``!``, ``?`` or ``…``, closing quotes or brackets included,
  then whitespace) when that end lies in the last stretch: at or beyond
  :func:`hold_from_chars` characters of the stripped reply, that is
  ``(max_tokens - stretch) * CHARS_PER_TOKEN`` with a stretch of a quarter of
  ``max_tokens``, at least 64 tokens. A cut reply with no sentence end there
  is kept whole: its text before the stretch has already been streamed.
- **Streaming.** Text is passed on at once, except, once a sentence end has
  been seen in the last stretch, the text after the latest such end: it is
  held until the next sentence end, or until the reply ends uncut.

How the chunks arrive (langchain-core 1.7, langchain-openai 1.x):
``ChatOpenAI(streaming=True, stream_usage=True)`` streams a role chunk, the
content chunks (about a token each), a chunk with empty content whose
``response_metadata`` holds ``finish_reason`` (``"stop"`` or ``"length"``,
as llama.cpp's server and OpenAI send it), a chunk with the
``usage_metadata``, and, from ``BaseChatModel.astream``, a last empty chunk
with ``chunk_position="last"``: the finish reason is not in the very last
chunk, so every chunk's metadata is read. ``ainvoke`` hands on one
``AIMessage`` with the same ``finish_reason`` and the summed usage.
``GenericFakeChatModel`` streams words and spaces with neither.

The stretch is measured in characters of the reply, not in chunks: ``ainvoke``
gives this step the whole message at once, where a chunk count could not be
reproduced, and streamed and invoked outputs would disagree; characters also
need no assumption about how many tokens a provider puts in a chunk.

The summaries use a second rule, :func:`finish_to_length`, for a target
length of N words met within ±30% (:func:`~lc_async_pipelines._text.word_range`:
low = ceil(0.7N), high = floor(1.3N), words counted as ``str.split`` does):

- **In range or short, and ended on its own:** kept whole (a short reply
  cannot be lengthened here).
- **Over high words, or cut by ``max_tokens``:** it ends at its last sentence
  end that has between low and high words before it. With none there, a cut
  reply of at most high words is kept whole, and a longer reply keeps its
  first high words, trailing ``,;:`` and dashes dropped, with ``...`` added.
  So the finished text is never over high words.
- **Repeats first:** before the length is judged, the sentences that say
  again what the reply already said are left out
  (:func:`~lc_async_pipelines._repeats.drop_repeats`: half or more of a
  sentence's word 3-grams seen before it), so a looping reply is judged on
  what it says once.
- **Streaming:** the first sentence is passed on as it comes; each later one
  once it is whole and judged no repeat. Text is held after the latest
  sentence end in the range; as soon as the kept text passes high words, the
  finished text is known and passed on, and the rest of the reply is read
  (for its usage) but dropped. The number of sentences left out is
  :attr:`LengthFinisher.dropped`, which the chain step notes in the record
  (``{"repeats_dropped": n}``, a ``NOTE_EVENT`` custom event).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import cast

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator

from lc_async_pipelines._repeats import RepeatFilter, drop_repeats
from lc_async_pipelines._text import (
    CHARS_PER_TOKEN,
    SENTENCE_END,
    WORD,
    estimate_tokens,
    word_range,
)
from lc_async_pipelines.runner.notes import NOTE_EVENT

__all__ = [
    "LengthFinisher",
    "ModelOutput",
    "ReplyFinisher",
    "finish_reply",
    "finish_reply_text",
    "finish_to_length",
    "fit_to_length",
    "hold_from_chars",
    "reply_was_cut",
]

# What the step takes: the chat model's message chunks (or whole message), or text.
ModelOutput = BaseMessage | str

# Keys a provider may report its stop reason under (OpenAI and llama.cpp,
# Anthropic, Ollama, Bedrock), and the values that mean "stopped on the limit".
_FINISH_KEYS = ("finish_reason", "stop_reason", "done_reason", "stopReason")
_CUT_REASONS = frozenset({"length", "max_tokens"})
# The last stretch: a quarter of the token budget, and at least this many tokens
# (224 characters, about 40 words: longer than nearly any sentence, so a cut
# reply's unfinished sentence rarely starts before the stretch).
_MIN_STRETCH_TOKENS = 64
# Dropped from the end of a reply cut at a word boundary, before the "...".
_DANGLING = ",;:-\u2013\u2014"
_ELLIPSIS = "..."  # ASCII: a reader checking for a final "." sees an ending


def hold_from_chars(max_tokens: int) -> int:
    """Return where the last stretch of a ``max_tokens`` reply starts, in characters.

    A cut reply is trimmed to a sentence end only at or beyond this position:
    the last quarter of the budget (at least 64 tokens), at ``CHARS_PER_TOKEN``
    characters a token.
    """
    stretch = max(_MIN_STRETCH_TOKENS, max_tokens // 4)
    return math.floor(max(0, max_tokens - stretch) * CHARS_PER_TOKEN)


def reply_was_cut(
    finish_reason: str | None, output_tokens: int | None, text: str, max_tokens: int
) -> bool:
    """Tell whether a reply stopped on the ``max_tokens`` limit.

    Args:
        finish_reason: the reason the provider reported, if any.
        output_tokens: the reply's output tokens from ``usage_metadata``, if any.
        text: the reply's text (used only when neither of the above is known).
        max_tokens: the limit the reply was generated under.

    Returns:
        True for a reason of ``"length"`` or ``"max_tokens"``; False for any
        other reason; else whether the reported (or, lacking that, estimated)
        output tokens reach ``max_tokens``.
    """
    if finish_reason:
        return finish_reason.lower() in _CUT_REASONS
    if output_tokens is not None:
        return output_tokens >= max_tokens
    return estimate_tokens(text) >= max_tokens


def finish_reply_text(text: str, *, cut: bool, hold_from: int) -> str:
    """Return the finished reply: stripped, and trimmed when cut (see the module's rule).

    Args:
        text: the whole reply.
        cut: whether it stopped on the token limit (:func:`reply_was_cut`).
        hold_from: where the last stretch starts, in characters of the stripped
            reply (:func:`hold_from_chars`).
    """
    text = text.strip()
    if cut:
        ends = [m.end() for m in SENTENCE_END.finditer(text)]
        if ends and hold_from <= ends[-1] < len(text):
            return text[: ends[-1]]
    return text


def _last_end_in_range(text: str, low: int, high: int, *, growing: bool = False) -> int | None:
    """Return the last sentence end of ``text`` with ``low``..``high`` words before it.

    ``growing``: ``text`` is a reply still being streamed, where an end at its
    very end is tentative ("3." of "3.5") and not counted.
    """
    words = [m.end() for m in WORD.finditer(text)]
    best = None
    for match in SENTENCE_END.finditer(text):
        if growing and match.end() == len(text):
            break
        # A sentence end closes a word: the words before it are those ending at or before it.
        count = bisect.bisect_right(words, match.end())
        if count > high:
            break
        if count >= low:
            best = match.end()
    return best


def fit_to_length(text: str, target_words: int, *, cut: bool) -> str:
    """Return the reply finished to a target length (the module's length rule).

    Args:
        text: the whole reply.
        target_words: the asked length N, in words.
        cut: whether it stopped on the token limit (:func:`reply_was_cut`).

    Returns:
        The stripped reply, its repeated sentences left out
        (:func:`~lc_async_pipelines._repeats.drop_repeats`): whole when it
        ended on its own within ``floor(1.3N)`` words; else up to its last
        sentence end with ``ceil(0.7N)`` to ``floor(1.3N)`` words before it;
        else (no such end) whole when it has at most ``floor(1.3N)`` words, or
        its first ``floor(1.3N)`` words and ``...``. Never over
        ``floor(1.3N)`` words.

    Raises:
        ConfigurationError: ``target_words`` is below 1.
    """
    return _fit_words(drop_repeats(text), target_words, cut=cut)


def _fit_words(text: str, target_words: int, *, cut: bool) -> str:
    """:func:`fit_to_length` on a reply already free of repeats."""
    low, high = word_range(target_words)
    text = text.strip()
    words = list(WORD.finditer(text))
    if len(words) <= high and not cut:
        return text
    end = _last_end_in_range(text, low, high)
    if end is not None:
        return text[:end]
    if len(words) <= high:
        return text
    return text[: words[high - 1].end()].rstrip(_DANGLING) + _ELLIPSIS


class ReplyFinisher:
    """The streaming form of :func:`finish_reply_text`, one reply at a time.

    :meth:`feed` each chunk as it arrives and pass on what it returns; then
    pass on what :meth:`close` returns. The pieces join to
    ``finish_reply_text(whole_reply, cut=..., hold_from=...)``.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.hold_from = hold_from_chars(max_tokens)
        self._text = ""  # the reply so far, leading whitespace dropped
        self._sent = 0  # characters of _text passed on
        self._scan = 0  # where the search for sentence ends resumes
        self._last_end: int | None = None  # the latest sentence end followed by whitespace
        self._finish_reason: str | None = None
        self._output_tokens: int | None = None

    def feed(self, chunk: ModelOutput) -> str:
        """Take the next chunk; return the text that can be passed on now (may be empty)."""
        piece = self._observe(chunk)
        if not self._text:
            piece = piece.lstrip()
        if not piece:
            return ""
        self._text += piece
        self._find_sentence_ends()
        limit = len(self._text.rstrip())
        if self._last_end is not None and self._last_end >= self.hold_from:
            limit = min(limit, self._last_end)
        return self._pass_on(limit)

    def close(self) -> str:
        """End the reply; return the rest of the finished text (may be empty)."""
        cut = reply_was_cut(self._finish_reason, self._output_tokens, self._text, self.max_tokens)
        final = finish_reply_text(self._text, cut=cut, hold_from=self.hold_from)
        rest = final[self._sent :]
        self._sent = len(final)
        return rest

    def _observe(self, chunk: ModelOutput) -> str:
        if isinstance(chunk, str):
            return chunk
        for key in _FINISH_KEYS:
            reason = chunk.response_metadata.get(key)
            if isinstance(reason, str) and reason:
                self._finish_reason = reason
        usage = chunk.usage_metadata if isinstance(chunk, AIMessage) else None
        # A reply read back from a cache may carry usage without output tokens.
        tokens = usage.get("output_tokens") if usage is not None else None
        if isinstance(tokens, int):
            self._output_tokens = (self._output_tokens or 0) + tokens
        return str(chunk.text)

    def _find_sentence_ends(self) -> None:
        # An end followed by whitespace is final; one at the end of the text so
        # far is tentative, and the search resumes at its start. No other match
        # can start before the end of the text as it is now.
        resume = len(self._text)
        for match in SENTENCE_END.finditer(self._text, self._scan):
            if match.end() < len(self._text):
                self._last_end = match.end()
            else:
                resume = match.start()
        self._scan = resume

    def _pass_on(self, limit: int) -> str:
        if limit <= self._sent:
            return ""
        text = self._text[self._sent : limit]
        self._sent = limit
        return text


class LengthFinisher(ReplyFinisher):
    """The streaming form of :func:`fit_to_length`, one reply at a time.

    Used as :class:`ReplyFinisher` is: the pieces :meth:`feed` and :meth:`close`
    return join to ``fit_to_length(whole_reply, target_words, cut=...)``.
    :attr:`dropped` counts the repeated sentences left out.

    Raises:
        ConfigurationError: ``target_words`` is below 1.
    """

    def __init__(self, target_words: int, max_tokens: int) -> None:
        super().__init__(max_tokens)
        self.target_words = target_words
        self.low, self.high = word_range(target_words)
        self._repeats = RepeatFilter()
        self._decided = False  # past high words: the finished text is known and sent

    @property
    def dropped(self) -> int:
        """How many repeated sentences were left out so far."""
        return self._repeats.dropped

    def feed(self, chunk: ModelOutput) -> str:
        """Take the next chunk; return the text that can be passed on now (may be empty)."""
        piece = self._observe(chunk)
        if self._decided:
            return ""
        if not self._text:
            piece = piece.lstrip()
        if not piece:
            return ""
        self._text += piece
        self._repeats.feed(piece)
        # The first sentence cannot be a repeat: it streams as it comes; a later
        # one shows once whole and judged.
        first = self._repeats.units == 0
        pending = self._repeats.pending.rstrip() if first else ""
        if pending.endswith((",", ";")):
            pending = pending[:-1]  # it may end a clause, whose comma the filter holds back
        visible = self._repeats.kept + pending
        text = visible.rstrip()
        words = list(WORD.finditer(text))
        if len(words) > self.high:
            # Every sentence end within high words is final by now: the finished
            # text no longer depends on what comes next.
            self._decided = True
            return self._emit(_fit_words(text, self.target_words, cut=True))
        end = _last_end_in_range(visible, self.low, self.high, growing=first)
        if end is None:
            limit = len(text)
            if len(words) == self.high:
                # This word may end the reply cut at a word boundary, without its ",;:".
                limit = len(text.rstrip(_DANGLING))
        else:
            limit = end
        return self._emit(visible[:limit]) if limit > self._sent else ""

    def close(self) -> str:
        """End the reply; return the rest of the finished text (may be empty)."""
        if self._decided:
            return ""
        cut = reply_was_cut(self._finish_reason, self._output_tokens, self._text, self.max_tokens)
        return self._emit(_fit_words(self._repeats.finish(), self.target_words, cut=cut))

    def _emit(self, final: str) -> str:
        rest = final[self._sent :]
        self._sent = len(final)
        return rest


def finish_to_length(
    target_words: int, max_tokens: int, *, name: str = "finish_to_length"
) -> Runnable[ModelOutput, str]:
    """Return the streaming last step of a summary chain: chunks in, text of about N words out.

    Args:
        target_words: the asked length N, in words; the text is finished to
            ``ceil(0.7N)``..``floor(1.3N)`` words (the module's length rule).
        max_tokens: the ``max_tokens`` the model step is bound to.
        name: the step's run name.

    Returns:
        A ``RunnableGenerator`` applying :func:`fit_to_length`; ``ainvoke``
        returns the join of what ``astream`` yields.

    Raises:
        ConfigurationError: ``target_words`` is below 1.
    """
    word_range(target_words)  # refuse a bad target when the chain is built
    return _generator(lambda: LengthFinisher(target_words, max_tokens), name)


def finish_reply(max_tokens: int, *, name: str = "finish_reply") -> Runnable[ModelOutput, str]:
    """Return the streaming last step of a chain: model chunks in, finished text out.

    Args:
        max_tokens: the ``max_tokens`` the model step is bound to (the factory's).
        name: the step's run name.

    Returns:
        A ``RunnableGenerator`` applying the module's rule; ``ainvoke`` returns
        the join of what ``astream`` yields.
    """
    return _generator(lambda: ReplyFinisher(max_tokens), name)


def _generator(new_finisher: Callable[[], ReplyFinisher], name: str) -> Runnable[ModelOutput, str]:
    def finish(chunks: Iterator[ModelOutput], config: RunnableConfig) -> Iterator[str]:
        finisher = new_finisher()
        yielded = False
        for chunk in chunks:
            if text := finisher.feed(chunk):
                yielded = True
                yield text
        rest = finisher.close()
        if dropped := _dropped(finisher):
            dispatch_custom_event(NOTE_EVENT, {"repeats_dropped": dropped}, config=config)
        if rest or not yielded:  # an empty reply is "", not None
            yield rest

    async def afinish(
        chunks: AsyncIterator[ModelOutput], config: RunnableConfig
    ) -> AsyncIterator[str]:
        finisher = new_finisher()
        yielded = False
        async for chunk in chunks:
            if text := finisher.feed(chunk):
                yielded = True
                yield text
        rest = finisher.close()
        if dropped := _dropped(finisher):
            await adispatch_custom_event(NOTE_EVENT, {"repeats_dropped": dropped}, config=config)
        if rest or not yielded:
            yield rest

    # langchain-core passes `config` to a transform that takes it (accepts_config);
    # its type hints leave the argument out.
    return RunnableGenerator(
        cast("Callable[[Iterator[ModelOutput]], Iterator[str]]", finish),
        cast("Callable[[AsyncIterator[ModelOutput]], AsyncIterator[str]]", afinish),
        name=name,
    )


def _dropped(finisher: ReplyFinisher) -> int:
    return finisher.dropped if isinstance(finisher, LengthFinisher) else 0
