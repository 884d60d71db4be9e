"""Follow a records file as it grows: complete lines from a byte offset, never the whole file.

A run appends one whole line per record and flushes it, so the file ends in
a complete line, or in a partial one being written (or cut by a kill). The
tail hands out complete lines only and keeps its offset before a partial
one, so that line is read once it ends. A file replaced under the same name
(a resume compacts the records with ``os.replace``, ``--restart`` moves the
run aside) or truncated is read again from the start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from lc_async_pipelines.runner.records.scan import parse_line

__all__ = ["RecordTail", "TailBatch", "TailLine"]


class TailLine(NamedTuple):
    """One complete line of the records file.

    Attributes:
        offset: where the line starts, bytes from the start of the file.
        number: its line number, 1-based.
        record: the parsed record; None when the line is not one.
        problem: why it is not a record (``"not JSON"``, ``"blank"``...); None for a record.
    """

    offset: int
    number: int
    record: dict[str, Any] | None
    problem: str | None


@dataclass
class TailBatch:
    """What one :meth:`RecordTail.read` found.

    Attributes:
        lines: the complete lines read, in file order.
        replaced: the file was replaced or truncated since the last read; the
            lines start again from line 1 and what was read before is stale.
        size: the file's size at this read, bytes (0 when it is missing).
        missing: the file does not exist (yet, or any more).
    """

    lines: list[TailLine] = field(default_factory=list)
    replaced: bool = False
    size: int = 0
    missing: bool = False


class RecordTail:
    """Read a records file's complete lines incrementally, from where the last read stopped.

    Args:
        path: the records file (it need not exist yet).

    Attributes:
        offset: bytes consumed: the start of the first line not yet handed out.
        lines: complete lines handed out since the file was (re)opened.
        pending: bytes after ``offset`` at the last read: a partial last line
            (being written, or cut by a kill), or lines not read yet.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self.pending = 0
        self._identity: tuple[int, int] | None = None

    def read(self, max_bytes: int = 4 << 20) -> TailBatch:
        """Hand out the complete lines after :attr:`offset`, about ``max_bytes`` at most.

        A single line longer than ``max_bytes`` is read whole. Lines that are
        not records come back with their ``problem``; they are not errors here.

        Args:
            max_bytes: the budget of one read, bytes (call again for more).

        Returns:
            The lines read; ``replaced`` when the file is another one than
            before, or shorter than what was read (the read restarts at 0).

        Raises:
            OSError: the file exists but cannot be read (permissions...).
        """
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return TailBatch(missing=True)
        with fh:
            stat = os.fstat(fh.fileno())
            batch = TailBatch(size=stat.st_size)
            identity = (stat.st_dev, stat.st_ino)  # tells a replaced file from the old one
            if self._identity is not None and (
                identity != self._identity or stat.st_size < self.offset
            ):
                batch.replaced = True
                self.offset = self.lines = 0
            self._identity = identity
            fh.seek(self.offset)
            data = _whole_lines(fh, max_bytes)
        self._hand_out(data, batch)
        self.pending = max(0, batch.size - self.offset)
        return batch

    def _hand_out(self, data: bytes, batch: TailBatch) -> None:
        start = 0
        while start < len(data):
            end = data.index(b"\n", start) + 1
            raw = data[start:end]
            self.lines += 1
            record, problem = parse_line(raw)
            batch.lines.append(TailLine(self.offset + start, self.lines, record, problem))
            start = end
        self.offset += len(data)


def _whole_lines(fh: BinaryIO, max_bytes: int) -> bytes:
    """Read about ``max_bytes`` from ``fh``, cut after its last newline (a long line: read on)."""
    data = fh.read(max_bytes)
    cut = data.rfind(b"\n")
    while cut < 0 and len(data) >= max_bytes:  # one line longer than the budget
        more = fh.read(max_bytes)
        if not more:
            break
        data += more
        cut = data.rfind(b"\n")
        max_bytes *= 2
    return data[: cut + 1]
