"""Stream tokens to a terminal as they arrive, tagged with their item when many run at once."""

from __future__ import annotations

import sys
from typing import TextIO
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines.callbacks.base import TaggedCallbackHandler

__all__ = ["TerminalStreamHandler"]


class TerminalStreamHandler(TaggedCallbackHandler):
    """Write streamed tokens to ``stream``.

    With ``tagged=False`` tokens are written raw as they come (one call at a
    time). With ``tagged=True`` (many calls at once) each call's tokens are
    buffered until a newline and written as whole lines prefixed with
    ``[tag]``, so concurrent outputs do not interleave mid-line. The tag is the
    item id from ``config["metadata"]["item_id"]`` (the runner sets it), else
    ``call-N``: one N per top-level invocation (an ``ainvoke``, or each input of
    an ``abatch``), shared by all the model calls made under it (see
    :class:`~lc_async_pipelines.callbacks.base.TaggedCallbackHandler`).

    It asks for tokens (``wants_tokens``): the session's model streams the
    calls it sees. A bare chat model sends tokens only when it streams
    (``ChatOpenAI(streaming=True)``, or ``astream``).

    Args:
        stream: where to write (default ``sys.stdout``).
        tagged: write whole lines prefixed with ``[tag]`` rather than raw tokens.
    """

    wants_tokens = True

    def __init__(self, stream: TextIO | None = None, *, tagged: bool = True) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.tagged = tagged
        self._buffers: dict[UUID, list[str]] = {}

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        """Start this call's line buffer."""
        self._buffers[run_id] = []

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        """Write the token (raw), or whole lines of it (tagged)."""
        if not self.tagged:
            self.stream.write(text)
            self.stream.flush()
            return
        pieces = self._buffers.setdefault(run_id, [])
        if "\n" not in text:  # most tokens: no line ends, nothing to write
            pieces.append(text)
            return
        *lines, rest = ("".join(pieces) + text).split("\n")
        for line in lines:
            if line.strip():
                self._write_line(tag, line)
        pieces[:] = [rest]

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        """Flush what is left of this call's output."""
        self._finish(run_id, tag)

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        """Flush, then note the error on the call's line."""
        self._finish(run_id, tag, suffix=f" [error: {type(error).__name__}]")

    def _finish(self, run_id: UUID, tag: str, suffix: str = "") -> None:
        rest = "".join(self._buffers.pop(run_id, []))
        if self.tagged:
            if rest or suffix:
                self._write_line(tag, rest + suffix)
        else:
            self.stream.write(suffix + "\n")
            self.stream.flush()

    def _write_line(self, tag: str, line: str) -> None:
        self.stream.write(f"[{tag}] {line}\n")
        self.stream.flush()
