"""Stream tokens to a terminal as they arrive, tagged with their item when many run at once."""

from __future__ import annotations

import sys
from typing import Any, TextIO
from uuid import UUID

from langchain_core.outputs import LLMResult

from lc_async_pipelines.callbacks._base import ItemAwareHandler, Token, token_text

__all__ = ["TerminalStreamHandler"]


class TerminalStreamHandler(ItemAwareHandler):
    """Write streamed tokens to ``stream``.

    With ``tagged=False`` tokens are written raw as they come (one call at a
    time). With ``tagged=True`` (many calls at once) each call's tokens are
    buffered until a newline and written as whole lines prefixed with
    ``[item]``, so concurrent outputs do not interleave mid-line.

    Tokens arrive only from a streaming model (``ChatOpenAI(streaming=True)``,
    as :func:`pipelines.make_chat_model` builds it, or ``astream``).

    Args:
        stream: where to write (default ``sys.stdout``).
        tagged: prefix lines with the item id from ``config["metadata"]["item_id"]``
            (or the run id's first 8 hex digits when absent).
    """

    def __init__(self, stream: TextIO | None = None, *, tagged: bool = True) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.tagged = tagged
        self._buffers: dict[UUID, str] = {}

    async def on_call_start(self, run_id: UUID, item: str | None) -> None:
        """Start this call's line buffer."""
        self._buffers[run_id] = ""

    async def on_llm_new_token(self, token: Token, *, run_id: UUID, **kwargs: Any) -> None:
        """Write the token (raw), or whole lines of it (tagged)."""
        text = token_text(token)
        if not self.tagged:
            self.stream.write(text)
            self.stream.flush()
            return
        buffer = self._buffers.get(run_id, "") + text
        *lines, rest = buffer.split("\n")
        for line in lines:
            if line.strip():
                self._write_line(run_id, line)
        self._buffers[run_id] = rest

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Flush what is left of this call's output."""
        self._finish(run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Flush, then note the error on the call's line."""
        self._finish(run_id, suffix=f" [error: {type(error).__name__}]")

    def _finish(self, run_id: UUID, suffix: str = "") -> None:
        rest = self._buffers.pop(run_id, "")
        if self.tagged:
            if rest or suffix:
                self._write_line(run_id, rest + suffix)
        else:
            self.stream.write(suffix + "\n")
            self.stream.flush()
        self.forget(run_id)

    def _write_line(self, run_id: UUID, line: str) -> None:
        self.stream.write(f"[{self.item(run_id) or run_id.hex[:8]}] {line}\n")
        self.stream.flush()
