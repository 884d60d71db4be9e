"""What a person sees while a run goes: streamed text above a progress bar pinned at the bottom.

On a terminal (stderr a TTY) a rich live display on stderr holds the bar; with
``--stream`` and stdout the terminal too, the text of each item in flight
streams above the bar as its tokens arrive, tagged with the item id, and when
the item's record is written its *output* replaces it for good. So what stays
on screen is exactly what the record holds: a reply the chain trimmed (a
summary's word limit, a story cut at ``max_tokens``) streams as the model wrote
it and then shows as it was kept, with a dim note of how many words were not
kept. While the display is live, anything printed to stdout or stderr
(``pipelines: warning`` lines, Python logging's default handler) goes through
its console, above the bar (rich's ``Live`` redirection).

Off a terminal: no bar and no control characters. With ``--stream`` and stdout
not a terminal, each item's output is written to stdout when its record is,
as plain text: ``[id] `` before each line when several items run at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from lc_async_pipelines.callbacks import TaggedCallbackHandler
from lc_async_pipelines.cli._progress import BarCounts, bar_columns

if TYPE_CHECKING:
    from langchain_core.outputs import LLMResult
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.progress import Progress, TaskID
    from rich.text import Text

    from lc_async_pipelines.runner.record import Record

_SPARE_ROWS = 4  # rows of the screen the text in flight leaves to the bar and a margin

TAG_STYLE = "bold cyan"
"""How an item's ``[id]`` tag is drawn on a terminal."""


@dataclass
class _Streamed:
    """The model calls of one item in flight: each call's text so far, which are still open."""

    calls: dict[UUID, str] = field(default_factory=dict)
    open: set[UUID] = field(default_factory=set)

    def text(self) -> str:
        """The item's calls' text, one paragraph a call (map-reduce runs several at once)."""
        return "\n".join(t.strip() for t in self.calls.values() if t.strip())


class InFlight:
    """The text of the items in flight, drawn above the bar (a rich renderable).

    Each item gets an equal share of the screen's height (the bar's line kept
    free) and shows the last lines of its text, under ``[id] …`` when its start
    no longer fits. Callbacks and the display's
    refresh thread both touch it, so every access holds a lock.

    Args:
        listen: make :attr:`handler`, the callback handler that feeds it tokens.

    Attributes:
        handler: with ``listen``, a handler for the run's callbacks (it asks
            the model to stream); else None.
    """

    def __init__(self, *, listen: bool = False) -> None:
        self._items: dict[str, _Streamed] = {}
        self._lock = threading.Lock()
        self.handler: TaggedCallbackHandler | None = _Tokens(self) if listen else None

    def start(self, tag: str, run_id: UUID) -> None:
        """A model call of item ``tag`` starts; an item's new call replaces its ended ones."""
        with self._lock:
            item = self._items.setdefault(tag, _Streamed())
            if not item.open:
                item.calls.clear()
            item.calls[run_id] = ""
            item.open.add(run_id)

    def token(self, tag: str, run_id: UUID, text: str) -> None:
        """Add a token to a call's text."""
        with self._lock:
            item = self._items.get(tag)
            if item is not None and run_id in item.calls:
                item.calls[run_id] += text

    def end(self, tag: str, run_id: UUID) -> None:
        """A call ended: its text stays until the item's record or next call."""
        with self._lock:
            item = self._items.get(tag)
            if item is not None:
                item.open.discard(run_id)

    def pop(self, tag: str) -> str:
        """Forget item ``tag`` (its record is written); return the text it streamed."""
        with self._lock:
            item = self._items.pop(tag, None)
        return "" if item is None else item.text()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The last lines of each item's text, tagged, within the screen's height."""
        with self._lock:
            texts = [(tag, item.text()) for tag, item in self._items.items()]
        texts = [(tag, text) for tag, text in texts if text]
        # Rows for the bar and a margin: a live region as tall as the screen
        # scrolls its top into the scrollback, and rich's redraw then erases
        # lines printed above it.
        room = max(1, console.height - _SPARE_ROWS)
        texts = texts[:room]
        share = max(1, room // len(texts)) if texts else 0
        for tag, text in texts:
            lines = list(tagged_text(tag, text).wrap(console, options.max_width))
            if len(lines) > share >= 2:  # the start scrolled away: keep the tag in sight
                lines = [tagged_text(tag, "…"), *lines[1 - share :]]
            for line in lines[-share:]:
                line.no_wrap, line.overflow = True, "crop"  # one row each, always
                yield line


def tagged_text(tag: str | None, text: str, style: str = "") -> Text:
    """``[tag] text`` as rich text (no markup is read from ``text``)."""
    from rich.text import Text

    tagged = Text()
    if tag is not None:
        tagged.append(f"[{tag}] ", style=TAG_STYLE)
    tagged.append(text, style=style)
    return tagged


class _Tokens(TaggedCallbackHandler):
    """Feed every model call's tokens, by item, to an :class:`InFlight`."""

    wants_tokens = True

    def __init__(self, in_flight: InFlight) -> None:
        super().__init__()
        self.in_flight = in_flight

    async def on_call_start(self, run_id: UUID, tag: str) -> None:
        """Open the call's text under its item."""
        self.in_flight.start(tag, run_id)

    async def on_call_token(self, run_id: UUID, tag: str, text: str) -> None:
        """Add the token to the call's text."""
        self.in_flight.token(tag, run_id, text)

    async def on_call_end(self, run_id: UUID, tag: str, response: LLMResult) -> None:
        """Mark the call ended."""
        self.in_flight.end(tag, run_id)

    async def on_call_error(self, run_id: UUID, tag: str, error: BaseException) -> None:
        """Mark the call ended."""
        self.in_flight.end(tag, run_id)


def in_flight_text(stream: bool) -> InFlight | None:
    """Return the texts of the items in flight when ``--stream`` can draw them live, else None.

    Live needs stdout and stderr both a terminal. The result's ``handler`` goes
    in the run's callbacks (it asks the model to stream); None asks for no tokens.
    """
    if not (stream and sys.stdout.isatty() and sys.stderr.isatty()):
        return None
    return InFlight(listen=True)


def output_text(record: Record) -> str:
    """The record's output as shown: its text, or its JSON object on one line."""
    output = record.to_dict()["output"]
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False)


def trim_note(streamed: str, shown: str) -> str | None:
    """A note when the record keeps fewer words than the model streamed, else None.

    Args:
        streamed: the text the item's model calls streamed (what was on screen).
        shown: the record's output, as now shown in its place.
    """
    dropped = len(streamed.split()) - len(shown.rstrip(".").split())
    if dropped <= 0 or streamed.strip() == shown.strip():
        return None
    words = "word" if dropped == 1 else "words"
    return f"(trimmed: {dropped} streamed {words} past the limit are not kept)"


def kept_note(notes: dict[str, Any]) -> str | None:
    """A note saying which candidate was kept when the item wrote several (best of k), else None.

    The candidates all streamed above, one paragraph each; the kept one now
    stands in their place (``notes``: a record's, with ``candidates`` and
    ``candidate_chosen`` from :func:`lc_async_pipelines.best_of.best_of`).
    """
    candidates, chosen = notes.get("candidates"), notes.get("candidate_chosen")
    if not isinstance(candidates, int) or candidates < 2 or not isinstance(chosen, int):
        return None
    return f"(best of {candidates}: candidate {chosen + 1} kept)"


def repeats_note(notes: dict[str, Any]) -> str | None:
    """A note when the chain left repeated sentences out of what streamed, else None.

    ``notes``: a record's, with ``repeats_dropped`` from the summaries' finishing
    step (:mod:`lc_async_pipelines._repeats`); the repeats streamed above as the
    model wrote them, and the kept output now stands in their place.
    """
    dropped = notes.get("repeats_dropped")
    if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 1:
        return None
    sentences = "sentence" if dropped == 1 else "sentences"
    return f"(trimmed: {dropped} repeated {sentences} left out)"


def error_text(record: Record) -> str:
    """``✗ Type: message`` of a failed record."""
    error = record.error or {}
    return f"✗ {error.get('type', '?')}: {error.get('message', '')}"


class RunDisplay:
    """The screen of one run: :meth:`show` each record as it is written (:func:`run_display`).

    Attributes:
        counts: what the bar counts.
        console: the live display's console (stderr), or None off a terminal.
    """

    def __init__(
        self,
        *,
        stream: bool,
        tagged: bool,
        stdout: TextIO,
        in_flight: InFlight,
        bar: tuple[Progress, TaskID] | None = None,
    ) -> None:
        self._stream = stream
        self._tagged = tagged
        self._stdout = stdout
        self.counts = BarCounts()
        self.in_flight = in_flight
        self._progress = None if bar is None else bar[0]
        self._task = None if bar is None else bar[1]
        self.console = None if self._progress is None else self._progress.console
        self._live_text = self.console is not None and in_flight.handler is not None
        self._note: str | None = None

    def set_note(self, note: str | None) -> None:
        """Show ``note`` after the counts (why the run goes slower), or clear it with None.

        On a terminal it joins the progress line at once; off one, a new note is
        printed once on stderr as ``pipelines: note``.
        """
        self._note = note
        if self._progress is None or self._task is None:
            if note is not None:
                print(f"pipelines: {note}", file=sys.stderr, flush=True)
            return
        self._progress.update(self._task, description=self._description())

    def _description(self) -> str:
        counts = self.counts.description()
        return counts if self._note is None else f"{counts} · {self._note}"

    def show(self, record: Record) -> None:
        """Count ``record`` on the bar and, when streaming, show its output for good."""
        if self._stream:
            self._show_output(record)
        self.counts.add(record)
        progress = self._progress
        if progress is None or self._task is None:
            return
        task = progress.tasks[0]
        finished = self.counts.finished
        if task.total is not None and finished > task.total:  # the count was an estimate
            progress.update(self._task, total=finished)
        elapsed = task.elapsed or 0.0
        progress.update(
            self._task,
            advance=1,
            rate=finished / elapsed if elapsed else 0.0,
            description=self._description(),
        )

    def line(self, text: str) -> None:
        """Print a line meant for stdout: above the bar when stdout is the terminal."""
        if self.console is not None and self._stdout.isatty():
            self.console.print(tagged_text(None, text), soft_wrap=True, highlight=False)
        else:
            print(text, file=self._stdout, flush=True)

    def _show_output(self, record: Record) -> None:
        streamed = self.in_flight.pop(record.id)
        tag = record.id if self._tagged else None
        if not self._live_text or self.console is None:
            self._write_plain(record, tag)
            return
        if not record.ok:
            self.console.print(tagged_text(tag, error_text(record), "red"))
            return
        shown = output_text(record)
        self.console.print(tagged_text(tag, shown))
        note = (
            kept_note(record.notes)
            or repeats_note(record.notes)
            or (trim_note(streamed, shown) if isinstance(record.output, str) else None)
        )
        if note is not None:
            self.console.print(tagged_text(None, note, "dim"))
        if self._tagged:
            self.console.print()  # a blank line between items

    def _write_plain(self, record: Record, tag: str | None) -> None:
        """The output as plain text on stdout: ``[tag] `` before each non-blank line."""
        text = output_text(record) if record.ok else error_text(record)
        if tag is None:
            self._stdout.write(text + "\n")
        else:
            lines = [line for line in text.splitlines() if line.strip()] or [""]
            self._stdout.write("".join(f"[{tag}] {line}\n" for line in lines))
        self._stdout.flush()


@contextlib.contextmanager
def run_display(
    total: int | None, *, stream: bool, tagged: bool, in_flight: InFlight | None = None
) -> Iterator[RunDisplay]:
    """Yield the run's :class:`RunDisplay`: live on a terminal, plain off one.

    Args:
        total: items expected in this session (None: unknown, no ETA is shown).
        stream: ``--stream``: show each item's output.
        tagged: several items at once: tag each item's text with its id.
        in_flight: the texts streaming now, from :func:`in_flight_text`; None:
            outputs show only when their records are written.
    """
    stdout = sys.stdout
    if in_flight is None:
        in_flight = InFlight()
    if not sys.stderr.isatty():
        yield RunDisplay(stream=stream, tagged=tagged, stdout=stdout, in_flight=in_flight)
        return
    progress = live_progress(in_flight, redirect_stdout=stdout.isatty())
    with progress:
        task = progress.add_task(BarCounts().description(), total=total, rate=0.0)
        yield RunDisplay(
            stream=stream, tagged=tagged, stdout=stdout, in_flight=in_flight, bar=(progress, task)
        )
        if total is None:  # an uncounted input (.json): the bar ends full, not pulsing
            progress.update(task, total=progress.tasks[0].completed)


def live_progress(
    in_flight: InFlight, *, redirect_stdout: bool, console: Console | None = None
) -> Progress:
    """Return rich's ``Progress`` on stderr, with the items in flight drawn above its bar.

    ``get_renderables`` is the hook rich documents for a custom progress display.
    A piped stdout is not redirected: it keeps its plain text.

    Args:
        in_flight: the texts drawn above the bar.
        redirect_stdout: print what is written to ``sys.stdout`` above the bar.
        console: where to draw (default: a console on stderr).
    """
    from rich.console import Console
    from rich.progress import Progress

    class _Progress(Progress):
        def get_renderables(self) -> Iterator[Any]:
            yield in_flight
            yield from super().get_renderables()

    return _Progress(
        *bar_columns(),
        console=console or Console(stderr=True),
        redirect_stdout=redirect_stdout,
        refresh_per_second=12,
    )
