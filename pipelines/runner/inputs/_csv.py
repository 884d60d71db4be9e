"""CSV input: the dialect guessed from the header, records split on line ends outside quotes.

Each record is parsed on its own, so one malformed record is one error item
and the others are read as they are; a record over the row limit is read past
without being kept. A record that spans lines and cannot be split cleanly (a
quote that never closes before the end of the file, or text after a closing
quote) is the error item of its first line, and the lines after that one are
read again as rows of their own: a stray quote never merges rows silently.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lc_async_pipelines.errors import InputError
from lc_async_pipelines.runner.inputs._rows import DRAIN_BYTES, MakeRow, bad_row, make_safely
from lc_async_pipelines.runner.inputs.items import Row

__all__ = ["BOM", "CSV_SNIFF_BYTES", "csv_rows"]


#: How much of a ``.csv`` file :class:`csv.Sniffer` sees to guess the delimiter.
#: Kept small: the sniffer's regular expressions are quadratic on hostile samples.
CSV_SNIFF_BYTES = 4096
BOM = b"\xef\xbb\xbf"
_CSV_DELIMITERS = ",\t;|"

# csv.field_size_limit is one value for the whole process; see _CsvFormat.parse.
_CSV_LIMIT_LOCK = threading.Lock()

# Where a CSV record scan stands (see _scan_csv).
_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)

# Reading lines again after a bad multi-line record costs up to the rest of the
# file each time; a hostile file could make that quadratic. Past this many lines
# read again beyond twice the file's lines seen, the file is refused as a whole.
_REREAD_SLACK_LINES = 100_000


class _CsvFormat:
    """A file's CSV dialect, and a parser of one record at a time in that dialect.

    One C reader serves the whole file: each record is handed to it alone, so a
    record that fails (or is never handed over) leaves the others as they are.
    """

    def __init__(self, delimiter: str, skipinitialspace: bool) -> None:
        self.delimiter = delimiter
        self.skipinitialspace = skipinitialspace
        self._options: dict[str, Any] = {
            "delimiter": delimiter,
            "quotechar": '"',
            "doublequote": True,
            "skipinitialspace": skipinitialspace,
            # text after a closing quote is an error, not glued to the field
            "strict": True,
        }
        self._feed: list[str] = []
        self._reader = csv.reader(iter(self._feed.pop, None), **self._options)

    def parse(self, text: str) -> list[str] | None:
        """Return the fields of one whole record, or None for a blank one.

        Raises:
            csv.Error: the record is malformed.
        """
        if len(text) <= csv.field_size_limit():
            return self._parse(text)
        # A field may be longer than csv's limit, which is one value for the whole
        # process (csv.field_size_limit). Raise it to this record's length for this
        # one parse only, then put it back, so other code never sees it changed
        # outside this call; the lock keeps our own readers in other threads from
        # restoring each other's values.
        with _CSV_LIMIT_LOCK:
            previous = csv.field_size_limit(len(text) + 1)
            try:
                return self._parse(text)
            finally:
                csv.field_size_limit(previous)

    def _parse(self, text: str) -> list[str] | None:
        self._feed.append(text)
        try:
            return next(self._reader, None)
        except IndexError:  # the file ended inside a quoted field: take it as csv does
            return next(csv.reader([text], **self._options), None)
        finally:
            self._feed.clear()


def _sniff_csv(sample: bytes) -> _CsvFormat:
    """Guess the delimiter from the first bytes; comma unless the header line says otherwise.

    :class:`csv.Sniffer` guesses from the sample; the guess must occur in the
    header line, else the header's first candidate delimiter wins. A header with
    no candidate is one column: comma.
    """
    text = sample.decode("utf-8", errors="replace")
    if len(sample) >= CSV_SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # whole lines only
    header = text.split("\n", 1)[0]
    candidates = [d for d in _CSV_DELIMITERS if d in header]
    if not candidates:
        return _CsvFormat(",", False)
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=_CSV_DELIMITERS)
        delimiter, skip = dialect.delimiter, bool(dialect.skipinitialspace)
    except csv.Error:
        delimiter, skip = candidates[0], False
    if delimiter not in candidates:
        delimiter, skip = candidates[0], False
    return _CsvFormat(delimiter, skip)


def _scan_csv(chunk: bytes, state: int, delim: bytes, skipspace: bool) -> int:
    """Return the scan state after ``chunk``, as :mod:`csv` reads quotes (non-strict).

    A quote opens a quoted field only at the start of a field; ``""`` inside one
    is a quote; after the closing quote the field goes on unquoted to the next
    delimiter. A line end outside a quoted field ends the record.
    """
    pos, end = 0, len(chunk)
    while pos < end:
        if state == _FIELD_START:
            if skipspace:
                while pos < end and chunk[pos] == 0x20:
                    pos += 1
                if pos == end:
                    break
            if chunk[pos] == 0x22:
                state, pos = _QUOTED, pos + 1
            else:
                state = _UNQUOTED
        elif state == _UNQUOTED:
            found = chunk.find(delim, pos)
            if found < 0:
                break
            state, pos = _FIELD_START, found + len(delim)
        elif state == _QUOTED:
            found = chunk.find(b'"', pos)
            if found < 0:
                break
            state, pos = _QUOTE_IN_QUOTED, found + 1
        elif chunk[pos] == 0x22:  # _QUOTE_IN_QUOTED, then a doubled quote
            state, pos = _QUOTED, pos + 1
        else:
            state = _UNQUOTED
    return state


@dataclass(frozen=True)
class _Record:
    """One CSV record as read: where it starts, its bytes, and how it ended.

    Attributes:
        line: the file line it starts on.
        data: its bytes, or None when it is over the row limit (not kept).
        unterminated: the file ended inside a quoted field of it.
        next_line: the file offset of the line after its first, when it spans
            more than one line; else None.
        end_line: the file line just past it.
    """

    line: int
    data: bytes | None
    unterminated: bool = False
    next_line: int | None = None
    end_line: int = 0


def _csv_records(fh: BinaryIO, fmt: _CsvFormat, max_row_bytes: int, line: int) -> Iterator[_Record]:
    """Yield the records from where ``fh`` stands, ``line`` being that file line.

    Records are split on line ends outside quoted fields; a record over
    ``max_row_bytes`` is read past without being kept.
    """
    delim = fmt.delimiter.encode()
    skipspace = fmt.skipinitialspace
    while raw := fh.readline(max_row_bytes + 1):
        start = line
        line += raw.endswith(b"\n")
        if raw.endswith(b"\n") and b'"' not in raw and len(raw) <= max_row_bytes:
            yield _Record(start, raw)  # the common case: one line, no quotes
            continue
        state = _scan_csv(raw, _FIELD_START, delim, skipspace)
        size = len(raw)
        parts: list[bytes] | None = [raw] if size <= max_row_bytes else None
        next_line: int | None = None
        while not (raw.endswith(b"\n") and state != _QUOTED):
            if next_line is None and raw.endswith(b"\n"):
                next_line = fh.tell()  # the record goes on past its first line
            raw = fh.readline(max_row_bytes + 1 if parts is not None else DRAIN_BYTES)
            if not raw:
                break  # end of file inside the record
            line += raw.endswith(b"\n")
            state = _scan_csv(raw, state, delim, skipspace)
            size += len(raw)
            if parts is not None and size <= max_row_bytes:
                parts.append(raw)
            else:
                parts = None  # too large: read past the rest, keep nothing
        data = b"".join(parts) if parts is not None else None
        yield _Record(start, data, state == _QUOTED, next_line, line)


def csv_rows(path: Path, fh: BinaryIO, make: MakeRow, max_row_bytes: int) -> Iterator[Row]:
    sample = fh.read(CSV_SNIFF_BYTES)
    offset = len(BOM) if sample.startswith(BOM) else 0
    sample = sample[offset:]
    if b"\r" in sample and b"\n" not in sample:
        raise InputError(f"{path}: lines end with a bare carriage return; save with \\n or \\r\\n")
    fmt = _sniff_csv(sample)
    header: list[str] | None = None
    row, line, reread = 0, 1, 0
    restart: int | None = offset
    while restart is not None:
        fh.seek(restart)
        restart = None
        for record in _csv_records(fh, fmt, max_row_bytes, line):
            if record.data is not None and (not record.data or record.data.isspace()):
                continue  # a blank line is no row
            if header is None:
                header = _csv_header(path, record, fmt, max_row_bytes)
                continue
            row += 1
            (item, content), unsplit = _csv_row(record, row, header, fmt, make, max_row_bytes)
            yield item, content
            if unsplit and record.next_line is not None:
                # Read the lines after its first again, as rows of their own.
                restart, line = record.next_line, record.line + 1
                reread += record.end_line - line
                if reread > 2 * record.end_line + _REREAD_SLACK_LINES:
                    raise InputError(
                        f"{path}: file line {record.line}: too many quotes that never close "
                        "or are followed by text to read past; is this a CSV file?"
                    )
                break


def _csv_header(path: Path, record: _Record, fmt: _CsvFormat, max_row_bytes: int) -> list[str]:
    where = f"{path}: the header row (line {record.line})"
    if record.unterminated:
        raise InputError(f"{where} opens a quote that never closes")
    if record.data is None:
        raise InputError(f"{where} is over {max_row_bytes} bytes")
    if b"\x00" in record.data:
        raise InputError(f"{where} contains NUL bytes; is this a CSV text file?")
    try:
        fields = fmt.parse(record.data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid UTF-8; save the file as UTF-8") from exc
    except csv.Error as exc:
        raise InputError(f"{where} is not valid CSV ({exc})") from exc
    return fields or []


def _csv_row(
    record: _Record,
    row: int,
    header: list[str],
    fmt: _CsvFormat,
    make: MakeRow,
    max_row_bytes: int,
) -> tuple[Row, bool]:
    """The row of ``record``, and whether its error is that it could not be split."""
    line, data = record.line, record.data
    if record.unterminated:
        cause = "a quoted field never closes: the file ends inside it"
        return bad_row(row, f"{cause} (file line {line})"), True
    if data is None:
        return bad_row(row, f"row is over {max_row_bytes} bytes (file line {line})"), False
    if b"\x00" in data:
        return bad_row(row, f"contains NUL bytes (file line {line})"), False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = line + data.count(b"\n", 0, exc.start)
        return bad_row(row, f"not valid UTF-8 (file line {bad_line})"), False
    try:
        fields = fmt.parse(text) or []
    except csv.Error as exc:
        return bad_row(row, f"malformed CSV ({exc}) (file line {line})"), True
    if len(fields) != len(header):
        cause = f"{len(fields)} fields where the header has {len(header)} (file line {line})"
        return bad_row(row, cause), False
    return make_safely(make, dict(zip(header, fields, strict=True)), row), False
