"""Read the items of a ``.jsonl``, ``.json``, ``.csv`` or ``.txt`` file lazily; count its rows.

See :mod:`lc_async_pipelines.runner.inputs` for what a careless or hostile
file becomes.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lc_async_pipelines.errors import ConfigurationError, InputError
from lc_async_pipelines.runner.inputs._csv import csv_rows
from lc_async_pipelines.runner.inputs._rows import (
    DRAIN_BYTES,
    MakeRow,
    bad_row,
    make_safely,
    text_row,
    whole_row,
)
from lc_async_pipelines.runner.inputs.items import ItemReader, Row

__all__ = ["DEFAULT_MAX_ROW_BYTES", "FORMATS", "MAX_JSON_BYTES", "count_items", "read_items"]


FORMATS = (".jsonl", ".json", ".csv", ".txt")

#: Default bound on one row (a ``.jsonl``/``.txt`` line or ``.csv`` record, line end
#: included; a ``.json`` element's input): a larger row becomes its error record.
DEFAULT_MAX_ROW_BYTES = 4 * 1024 * 1024

#: A ``.json`` file is parsed whole, which takes several times its size in memory:
#: larger files are refused (write them as ``.jsonl``, read one line at a time).
MAX_JSON_BYTES = 256 * 1024 * 1024
_HEAD_BYTES = 4096  # looked at for a file whose lines end with a bare CR
_WIDE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


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
            regular file, unreadable, UTF-16/UTF-32, its format unknown, or a
            ``.jsonl``/``.txt`` whose lines end with a bare carriage return; on
            iteration when a ``.json`` file is not one array or is too large, a
            ``.csv`` header cannot be read, a ``.csv`` has too many unclosed
            quotes to read past, or reading fails. Row-level problems are
            yielded as items with ``error``.
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
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    for bom, encoding in _WIDE_BOMS.items():
        if head.startswith(bom):
            raise InputError(f"{path}: is {encoding}; save it as UTF-8")
    if suffix in (".jsonl", ".txt") and b"\r" in head and b"\n" not in head:
        # One line of many rows (old Mac line ends): refused whole, not read as one row.
        raise InputError(f"{path}: lines end with a bare carriage return; save with \\n or \\r\\n")
    if whole_rows:
        keep = frozenset(keep_fields) if keep_fields is not None else None

        def make(row: Any, line: int) -> Row:
            return whole_row(row, line, id_field, text_key, keep)

    else:

        def make(row: Any, line: int) -> Row:
            return text_row(row, line, field, id_field)

    return ItemReader(path, _iter_rows(path, suffix, make, max_row_bytes))


def _iter_rows(path: Path, suffix: str, make: MakeRow, max_row_bytes: int) -> Iterator[Row]:
    with path.open("rb") as fh:
        if suffix == ".csv":
            yield from csv_rows(path, fh, make, max_row_bytes)
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
        while not raw.endswith(b"\n") and (raw := fh.readline(DRAIN_BYTES)):
            pass
        yield number, None


def _line_rows(fh: BinaryIO, jsonl: bool, make: MakeRow, max_row_bytes: int) -> Iterator[Row]:
    for line, raw in _bounded_lines(fh, max_row_bytes):
        if raw is None:
            yield bad_row(line, f"line is over {max_row_bytes} bytes")
            continue
        if b"\x00" in raw:
            yield bad_row(line, "contains NUL bytes (binary or UTF-16 data?)")
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            yield bad_row(line, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        if text.startswith("\ufeff"):  # a byte-order mark is not text
            text = text[1:]
        if not text or text.isspace():
            continue
        if not jsonl:
            yield _text_line(text.strip(), line, make)
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield bad_row(line, f"malformed JSON ({exc.msg})")
            continue
        except (ValueError, RecursionError) as exc:  # too many digits; nested too deep
            yield bad_row(line, f"malformed JSON ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        yield make_safely(make, row, line)


def _text_line(text: str, line: int, make: MakeRow) -> Row:
    """A ``.txt`` line's row; a carriage return inside it is an error, not a joined row."""
    if "\r" in text:  # a bare CR: two lines joined by an old Mac line end, or one cut
        return bad_row(line, "holds a bare carriage return (\\r): lines joined? save with \\n")
    return make_safely(make, text, line)


def _json_rows(path: Path, fh: BinaryIO, make: MakeRow, max_row_bytes: int) -> Iterator[Row]:
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
        item, content = make_safely(make, row, index)
        if content is not None and _input_bytes(item.input) > max_row_bytes:
            yield bad_row(index, f"input is over {max_row_bytes} bytes")
        else:
            yield item, content


def _input_bytes(value: str | dict[str, Any]) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    return len(json.dumps(value, ensure_ascii=False).encode())


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
