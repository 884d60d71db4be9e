"""Read run items lazily from ``.jsonl``, ``.json``, ``.csv`` or ``.txt`` files.

An item's input is one text field of its row, or with ``whole_rows=True`` the
whole row as an object, so that a prompt can take several variables from it.
Each row becomes an :class:`Item` with a stable id: the row's id field when it
has one, else a hash of the input, so identical inputs share one id.

Careless and hostile files never raise anything but
:class:`~lc_async_pipelines.errors.InputError`:

* A row that cannot be used becomes an :class:`Item` whose ``error`` starts
  with ``"line N: "`` and names the cause; the runner writes it as an error
  record and goes on. Causes: malformed JSON, missing field, empty text, bytes
  that are not UTF-8 or NUL bytes (only that row: ``.csv`` rows are decoded one
  by one), a row over ``max_row_bytes`` (skipped while reading, never held
  whole in memory), a ``.csv`` row with more or fewer fields than the header,
  and an id already used by an earlier row with a different input.
* A row repeating an earlier row (same id, same input) is skipped and counted
  in :attr:`ItemReader.duplicates`.
* A problem with the file as a whole (missing, a directory, unreadable,
  UTF-16, a ``.json`` that is not one array or is over :data:`MAX_JSON_BYTES`,
  a ``.csv`` header that cannot be read) raises ``InputError`` with one line
  naming the file and the cause.

A UTF-8 byte-order mark is skipped in every format. ``.csv`` files may be
comma, semicolon, tab or pipe separated (guessed with :class:`csv.Sniffer` from
the first :data:`CSV_SNIFF_BYTES` bytes and checked against the header line,
else comma), with LF or CRLF line ends and quoted multi-line fields.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lc_async_pipelines.errors import ConfigurationError, InputError

__all__ = [
    "CSV_SNIFF_BYTES",
    "DEFAULT_FIELDS",
    "DEFAULT_MAX_ROW_BYTES",
    "FORMATS",
    "MAX_JSON_BYTES",
    "Item",
    "ItemReader",
    "count_items",
    "item_id_for",
    "read_items",
]

FORMATS = (".jsonl", ".json", ".csv", ".txt")
# Tried in order when no --field is given.
DEFAULT_FIELDS = ("input", "text", "topic", "prompt", "document", "article")
#: Default bound on one row (a ``.jsonl``/``.txt`` line or ``.csv`` record, line end
#: included; a ``.json`` element's input): a larger row becomes its error record.
DEFAULT_MAX_ROW_BYTES = 4 * 1024 * 1024
#: A ``.json`` file is parsed whole, which takes several times its size in memory:
#: larger files are refused (write them as ``.jsonl``, read one line at a time).
MAX_JSON_BYTES = 256 * 1024 * 1024
#: How much of a ``.csv`` file :class:`csv.Sniffer` sees to guess the delimiter.
#: Kept small: the sniffer's regular expressions are quadratic on hostile samples.
CSV_SNIFF_BYTES = 4096

_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
_CSV_DELIMITERS = ",\t;|"
_DRAIN_BYTES = 1024 * 1024  # chunk size while skipping the rest of an oversized row
_DIGEST_MASK = (1 << 64) - 1
# csv.field_size_limit is one value for the whole process; see _CsvFormat.parse.
_CSV_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Item:
    """One unit of work.

    Attributes:
        id: stable id (row id field, else ``sha256(input)[:16]``; ``line-N`` for
            an error row).
        line: 1-based line (``.jsonl``, ``.txt``), row (``.csv``, header not
            counted) or index + 1 (``.json``).
        input: what is handed to the chain: the text, or the whole row
            ("" when ``error`` is set).
        error: why the row is unusable (``"line N: ..."``), or None.
    """

    id: str
    line: int
    input: str | dict[str, Any]
    error: str | None = None


def item_id_for(value: str | dict[str, Any]) -> str:
    """Return the content id of ``value``: the first 16 hex digits of its SHA-256.

    A row object is hashed as canonical JSON (sorted keys), so key order does not matter.

    Args:
        value: an item's input, text or row object.

    Returns:
        16 lowercase hex digits.
    """
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# A row as the format readers give it: the item, and the content id of its input
# (None for an error row). The content id is computed once and reused as the item's
# id when the row has none of its own.
_Row = tuple[Item, str | None]
_MakeRow = Callable[[Any, int], _Row]


def _bad(line: int, cause: str) -> _Row:
    return Item(f"line-{line}", line, "", f"line {line}: {cause}"), None


def _whole_row(
    row: Any, line: int, id_field: str | None, text_key: str, keep: frozenset[str] | None
) -> _Row:
    if isinstance(row, str):
        row = {text_key: row}
    if not isinstance(row, dict):
        return _bad(line, "expected an object or a string")
    row_id = row.get(id_field) if id_field else None
    if keep is not None:  # the chain reads these fields only: the rest is not its input
        row = {k: v for k, v in row.items() if k in keep}
    content = item_id_for(row)
    return Item(str(row_id) if row_id not in (None, "") else content, line, row), content


def _from_row(row: Any, line: int, field: str | None, id_field: str | None) -> _Row:
    if isinstance(row, str):
        text: Any = row
        row_id = None
    elif isinstance(row, dict):
        name = field or next((f for f in DEFAULT_FIELDS if f in row), None)
        if name is None or name not in row:
            wanted = field or " or ".join(DEFAULT_FIELDS)
            return _bad(line, f"missing field {wanted!r}")
        text = row[name]
        row_id = row.get(id_field) if id_field else None
    else:
        return _bad(line, "expected an object or a string")
    if not isinstance(text, str):
        return _bad(line, "field is not text")
    if not text or text.isspace():
        return _bad(line, "empty text")
    content = item_id_for(text)
    return Item(str(row_id) if row_id not in (None, "") else content, line, text), content


def _make_safely(make: _MakeRow, row: Any, line: int) -> _Row:
    try:
        return make(row, line)
    except (RecursionError, ValueError, TypeError) as exc:  # e.g. an id too long to print
        return _bad(line, f"cannot use the row ({type(exc).__name__})")


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class ItemReader(Iterator[Item]):
    """An iterator over the items of one input file that counts what it set aside.

    Returned by :func:`read_items`; iterate it once. Every row yields one item,
    except rows repeating an earlier row (same id, same input), which are
    skipped. A row whose id an earlier row used with a different input is
    yielded as an error record. The counters are final when iteration ends.
    Memory: one entry (the id and one integer) per distinct id.

    Attributes:
        path: the file being read.
        duplicates: rows skipped as repeats of an earlier row (same id and input).
        collisions: rows yielded as error records because their id was taken by an
            earlier row with a different input.
    """

    def __init__(self, path: Path, rows: Iterator[_Row]) -> None:
        """Wrap ``rows``, the format reader's (item, content id) pairs for ``path``."""
        self.path = path
        self.duplicates = 0
        self.collisions = 0
        self._rows = rows
        # id -> (first line << 64) | 64-bit content id; -(line) for an error row's id.
        self._ids: dict[str, int] = {}

    def __iter__(self) -> ItemReader:
        """Return the reader itself."""
        return self

    def __next__(self) -> Item:
        """Return the next item.

        Raises:
            StopIteration: after the last row.
            InputError: the file as a whole cannot be read (see :func:`read_items`).
        """
        ids = self._ids
        while True:
            try:
                item, content = next(self._rows)
            except OSError as exc:
                raise InputError(f"{self.path}: cannot read ({exc.strerror or exc})") from exc
            if content is None:
                return self._error_item(item)
            digest = int(content, 16)
            first = ids.get(item.id)
            if first is None:
                ids[item.id] = (item.line << 64) | digest
                return item
            if first >= 0 and first & _DIGEST_MASK == digest:
                self.duplicates += 1
                continue
            self.collisions += 1
            first_line = first >> 64 if first >= 0 else -first
            return self._error_item(
                Item(
                    "",
                    item.line,
                    "",
                    f"line {item.line}: id {_short(item.id)} already used by line "
                    f"{first_line} with different content",
                )
            )

    def _error_item(self, item: Item) -> Item:
        """Give an error item an id no other item of this file has (``line-N``)."""
        base = f"line-{item.line}"
        new_id, n = base, 1
        while new_id in self._ids:  # a row's own id may look like ours
            n += 1
            new_id = f"{base}-{n}"
        self._ids[new_id] = -item.line
        return item if item.id == new_id else Item(new_id, item.line, "", item.error)


def read_items(
    path: str | Path,
    *,
    field: str | None = None,
    id_field: str | None = "id",
    whole_rows: bool = False,
    text_key: str = "input",
    keep_fields: Collection[str] | None = None,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> ItemReader:
    """Return an iterator over the items of ``path``, read one at a time.

    Args:
        path: a ``.jsonl``, ``.json`` (array), ``.csv`` (header row) or ``.txt``
            (one item a line) file, UTF-8.
        field: the text field of object rows; default: the first of
            ``DEFAULT_FIELDS`` present. Ignored with ``whole_rows``.
        id_field: the field holding a row's own id, if any.
        whole_rows: each item's input is its whole row (an object) instead of
            one text field; a text row (``.txt``) becomes ``{text_key: line}``.
        text_key: the key of a text row in ``whole_rows`` mode.
        keep_fields: in ``whole_rows`` mode, the fields the chain reads (a
            prompt's variables); the others are left out of the input, so two
            rows that differ only elsewhere are the same item, not a collision.
        max_row_bytes: the largest row accepted, in bytes: a ``.jsonl`` or
            ``.txt`` line or a ``.csv`` record (line end included), or a ``.json``
            element's input (as UTF-8 text or canonical JSON). A larger row
            becomes its error record.

    Returns:
        An :class:`ItemReader`: an iterator of :class:`Item`, one per row
        (identical repeats skipped), with counters ``duplicates`` and
        ``collisions`` read after iteration.

    Raises:
        ConfigurationError: ``max_row_bytes`` is below 1.
        InputError: at the call when the file is missing, a directory, not a
            regular file, unreadable, UTF-16/UTF-32, or its format unknown; on
            iteration when a ``.json`` file is not one array or is too large, a
            ``.csv`` header cannot be read, or reading fails. Row-level problems
            are yielded as items with ``error``.
    """
    if max_row_bytes < 1:
        raise ConfigurationError(f"max_row_bytes must be at least 1, not {max_row_bytes}")
    path = Path(path)
    suffix = path.suffix.lower()
    # Checked here, not on first iteration, so a caller fails before it starts a model server.
    try:
        mode: int | None = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:  # a folder on the way we may not enter, a symlink loop
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory; give one {'/'.join(FORMATS)} file")
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown format {suffix!r}; expected one of {FORMATS}")
    if mode is None:
        raise InputError(f"{path}: no such file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file")
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    for bom, encoding in _WIDE_BOMS.items():
        if head.startswith(bom):
            raise InputError(f"{path}: is {encoding}; save it as UTF-8")
    if whole_rows:
        keep = frozenset(keep_fields) if keep_fields is not None else None

        def make(row: Any, line: int) -> _Row:
            return _whole_row(row, line, id_field, text_key, keep)

    else:

        def make(row: Any, line: int) -> _Row:
            return _from_row(row, line, field, id_field)

    return ItemReader(path, _iter_rows(path, suffix, make, max_row_bytes))


def _iter_rows(path: Path, suffix: str, make: _MakeRow, max_row_bytes: int) -> Iterator[_Row]:
    with path.open("rb") as fh:
        if suffix == ".csv":
            yield from _csv_rows(path, fh, make, max_row_bytes)
        elif suffix == ".json":
            yield from _json_rows(path, fh, make, max_row_bytes)
        else:
            yield from _line_rows(fh, suffix == ".jsonl", make, max_row_bytes)


def _bounded_lines(fh: BinaryIO, max_row_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes with line end), or None for a line over ``max_row_bytes``.

    An oversized line is read past in chunks, never held whole.
    """
    number = 0
    while raw := fh.readline(max_row_bytes + 1):
        number += 1
        if len(raw) <= max_row_bytes:
            yield number, raw
            continue
        while not raw.endswith(b"\n") and (raw := fh.readline(_DRAIN_BYTES)):
            pass
        yield number, None


def _line_rows(fh: BinaryIO, jsonl: bool, make: _MakeRow, max_row_bytes: int) -> Iterator[_Row]:
    for line, raw in _bounded_lines(fh, max_row_bytes):
        if raw is None:
            yield _bad(line, f"line is over {max_row_bytes} bytes")
            continue
        if b"\x00" in raw:
            yield _bad(line, "contains NUL bytes (binary or UTF-16 data?)")
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            yield _bad(line, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        if text.startswith("\ufeff"):  # a byte-order mark is not text
            text = text[1:]
        if not text or text.isspace():
            continue
        if not jsonl:
            yield _make_safely(make, text.strip(), line)
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _bad(line, f"malformed JSON ({exc.msg})")
            continue
        except (ValueError, RecursionError) as exc:  # too many digits; nested too deep
            yield _bad(line, f"malformed JSON ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        yield _make_safely(make, row, line)


def _json_rows(path: Path, fh: BinaryIO, make: _MakeRow, max_row_bytes: int) -> Iterator[_Row]:
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_JSON_BYTES:
        raise InputError(
            f"{path}: {size} bytes is too large for a .json array (at most {MAX_JSON_BYTES}); "
            "write it as .jsonl, one object a line"
        )
    data = fh.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from exc
    del data
    if not text.strip():
        return  # an empty file: no items
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a JSON document ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not a JSON document ({type(exc).__name__})") from exc
    del text
    if not isinstance(rows, list):
        raise InputError(
            f"{path}: expected a JSON array of objects, not {type(rows).__name__}; "
            "wrap it in [ ] or write .jsonl"
        )
    for index, row in enumerate(rows, start=1):
        rows[index - 1] = None  # let each row go once used
        item, content = _make_safely(make, row, index)
        if content is not None and _input_bytes(item.input) > max_row_bytes:
            yield _bad(index, f"input is over {max_row_bytes} bytes")
        else:
            yield item, content


def _input_bytes(value: str | dict[str, Any]) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    return len(json.dumps(value, ensure_ascii=False).encode())


# --- CSV --------------------------------------------------------------------------------

# Where a CSV record scan stands (see _scan_csv).
_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)


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


def _csv_records(
    fh: BinaryIO, fmt: _CsvFormat, max_row_bytes: int
) -> Iterator[tuple[int, bytes | None]]:
    """Yield (file line where a record starts, its bytes), or None for a record too large.

    Records are split on line ends outside quoted fields; a record over
    ``max_row_bytes`` is read past without being kept.
    """
    delim = fmt.delimiter.encode()
    skipspace = fmt.skipinitialspace
    line = 1  # the file line the next byte is on
    while raw := fh.readline(max_row_bytes + 1):
        start = line
        line += raw.endswith(b"\n")
        if raw.endswith(b"\n") and b'"' not in raw and len(raw) <= max_row_bytes:
            yield start, raw  # the common case: one line, no quotes
            continue
        state = _scan_csv(raw, _FIELD_START, delim, skipspace)
        size = len(raw)
        parts: list[bytes] | None = [raw] if size <= max_row_bytes else None
        while not (raw.endswith(b"\n") and state != _QUOTED):
            raw = fh.readline(max_row_bytes + 1 if parts is not None else _DRAIN_BYTES)
            if not raw:
                break  # end of file inside the record
            line += raw.endswith(b"\n")
            state = _scan_csv(raw, state, delim, skipspace)
            size += len(raw)
            if parts is not None and size <= max_row_bytes:
                parts.append(raw)
            else:
                parts = None  # too large: read past the rest, keep nothing
        yield start, b"".join(parts) if parts is not None else None


def _csv_rows(path: Path, fh: BinaryIO, make: _MakeRow, max_row_bytes: int) -> Iterator[_Row]:
    sample = fh.read(CSV_SNIFF_BYTES)
    offset = len(_BOM) if sample.startswith(_BOM) else 0
    sample = sample[offset:]
    if b"\r" in sample and b"\n" not in sample:
        raise InputError(f"{path}: lines end with a bare carriage return; save with \\n or \\r\\n")
    fmt = _sniff_csv(sample)
    fh.seek(offset)
    header: list[str] | None = None
    row = 0
    for line, record in _csv_records(fh, fmt, max_row_bytes):
        if record is not None and (not record or record.isspace()):
            continue  # a blank line is no row
        if header is None:
            header = _csv_header(path, line, record, fmt, max_row_bytes)
            continue
        row += 1
        yield _csv_row(record, row, line, header, fmt, make, max_row_bytes)


def _csv_header(
    path: Path, line: int, record: bytes | None, fmt: _CsvFormat, max_row_bytes: int
) -> list[str]:
    where = f"{path}: the header row (line {line})"
    if record is None:
        raise InputError(f"{where} is over {max_row_bytes} bytes")
    try:
        fields = fmt.parse(record.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid UTF-8; save the file as UTF-8") from exc
    except csv.Error as exc:
        raise InputError(f"{where} is not valid CSV ({exc})") from exc
    return fields or []


def _csv_row(
    record: bytes | None,
    row: int,
    line: int,
    header: list[str],
    fmt: _CsvFormat,
    make: _MakeRow,
    max_row_bytes: int,
) -> _Row:
    if record is None:
        return _bad(row, f"row is over {max_row_bytes} bytes (file line {line})")
    if b"\x00" in record:
        return _bad(row, f"contains NUL bytes (file line {line})")
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = line + record.count(b"\n", 0, exc.start)
        return _bad(row, f"not valid UTF-8 (file line {bad_line})")
    try:
        fields = fmt.parse(text) or []
    except csv.Error as exc:
        return _bad(row, f"malformed CSV ({exc}) (file line {line})")
    if len(fields) != len(header):
        return _bad(
            row, f"{len(fields)} fields where the header has {len(header)} (file line {line})"
        )
    return _make_safely(make, dict(zip(header, fields, strict=True)), row)


# Counting reads the file once more: worth it below this size, for an ETA.
_COUNT_MAX_BYTES = 256 * 1024 * 1024


def count_items(path: str | Path, *, max_bytes: int = _COUNT_MAX_BYTES) -> int | None:
    """Return about how many rows ``path`` holds, when that is cheap to know; else None.

    ``.jsonl`` and ``.txt``: non-blank lines. ``.csv``: rows (quoted
    multi-line fields counted right). ``.json``: None (the array is parsed
    when read; counting would parse it twice). Files over ``max_bytes`` bytes,
    and files that cannot be read: None. Duplicates and bad rows are counted:
    this sizes a progress bar, nothing else.

    Args:
        path: the input file.
        max_bytes: the largest file worth counting.

    Returns:
        The row count, or None.
    """
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            return None
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".txt"):
            with path.open("rb") as fh:
                return sum(1 for raw in fh if raw.strip())
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
                return max(0, sum(1 for _ in csv.reader(fh)) - 1)
    except (OSError, csv.Error):
        return None
    return None
