"""Read run items lazily from ``.jsonl``, ``.json``, ``.csv`` or ``.txt`` files.

An item's input is one text field of its row, or with ``whole_rows=True`` the
whole row as an object, so that a prompt can take several variables from it.
Each row becomes an :class:`Item` with a stable id: the row's id field when it
has one, else a hash of the input, so identical inputs share one id. A row
that cannot be used (malformed JSON, missing field, empty text, bytes that are
not UTF-8) becomes an :class:`Item` whose ``error`` names the line and the
cause; the runner writes it as an error record and goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import InputError

__all__ = ["DEFAULT_FIELDS", "FORMATS", "Item", "count_items", "item_id_for", "read_items"]

FORMATS = (".jsonl", ".json", ".csv", ".txt")
# Tried in order when no --field is given.
DEFAULT_FIELDS = ("input", "text", "topic", "prompt", "document", "article")


@dataclass(frozen=True)
class Item:
    """One unit of work.

    Attributes:
        id: stable id (row id field, else ``sha256(input)[:16]``).
        line: 1-based line (``.jsonl``, ``.txt``), row (``.csv``) or index + 1 (``.json``).
        input: what is handed to the chain: the text, or the whole row
            ("" when ``error`` is set).
        error: why the row is unusable, or None.
    """

    id: str
    line: int
    input: str | dict[str, Any]
    error: str | None = None


def item_id_for(value: str | dict[str, Any]) -> str:
    """Return the content id of ``value``: the first 16 hex digits of its SHA-256.

    A row object is hashed as canonical JSON (sorted keys), so key order does not matter.
    """
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _whole_row(row: Any, line: int, id_field: str | None, text_key: str) -> Item:
    if isinstance(row, str):
        row = {text_key: row}
    if not isinstance(row, dict):
        return Item(f"line-{line}", line, "", f"line {line}: expected an object or a string")
    row_id = row.get(id_field) if id_field else None
    return Item(str(row_id) if row_id not in (None, "") else item_id_for(row), line, row)


def _from_row(row: Any, line: int, field: str | None, id_field: str | None) -> Item:
    if isinstance(row, str):
        text: Any = row
        row_id = None
    elif isinstance(row, dict):
        name = field or next((f for f in DEFAULT_FIELDS if f in row), None)
        if name is None or name not in row:
            wanted = field or " or ".join(DEFAULT_FIELDS)
            return Item(f"line-{line}", line, "", f"line {line}: missing field {wanted!r}")
        text = row[name]
        row_id = row.get(id_field) if id_field else None
    else:
        return Item(f"line-{line}", line, "", f"line {line}: expected an object or a string")
    if not isinstance(text, str):
        return Item(f"line-{line}", line, "", f"line {line}: field is not text")
    if not text.strip():
        return Item(f"line-{line}", line, "", f"line {line}: empty text")
    return Item(str(row_id) if row_id not in (None, "") else item_id_for(text), line, text)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                yield number, raw.decode("utf-8-sig")  # a BOM on line 1 is not text
            except UnicodeDecodeError:
                yield number, None


def read_items(
    path: str | Path,
    *,
    field: str | None = None,
    id_field: str | None = "id",
    whole_rows: bool = False,
    text_key: str = "input",
) -> Iterator[Item]:
    """Return an iterator over the items of ``path``, read one at a time.

    Args:
        path: a ``.jsonl``, ``.json`` (array), ``.csv`` (header row) or ``.txt``
            (one item a line) file.
        field: the text field of object rows; default: the first of
            ``DEFAULT_FIELDS`` present. Ignored with ``whole_rows``.
        id_field: the field holding a row's own id, if any.
        whole_rows: each item's input is its whole row (an object) instead of
            one text field; a text row (``.txt``) becomes ``{text_key: line}``.
        text_key: the key of a text row in ``whole_rows`` mode.

    Raises:
        InputError: at the call when the file is missing or its format unknown;
            on iteration when a ``.json`` file is not an array. Row-level
            problems are yielded as items with ``error``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    # Checked here, not on first iteration, so a caller fails before it starts a model server.
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown format {suffix!r}; expected one of {FORMATS}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if whole_rows:

        def make(row: Any, line: int) -> Item:
            return _whole_row(row, line, id_field, text_key)

    else:

        def make(row: Any, line: int) -> Item:
            return _from_row(row, line, field, id_field)

    return _iter_items(path, suffix, make)


def _iter_items(path: Path, suffix: str, make: Callable[[Any, int], Item]) -> Iterator[Item]:
    if suffix == ".jsonl":
        for line, text in _decoded_lines(path):
            if text is None:
                yield Item(f"line-{line}", line, "", f"line {line}: not valid UTF-8")
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Item(f"line-{line}", line, "", f"line {line}: malformed JSON ({exc.msg})")
                continue
            yield make(row, line)
    elif suffix == ".txt":
        for line, text in _decoded_lines(path):
            if text is None:
                yield Item(f"line-{line}", line, "", f"line {line}: not valid UTF-8")
            elif text.strip():
                yield make(text.strip(), line)
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            for row_number, row in enumerate(csv.DictReader(fh), start=1):
                yield make(row, row_number)
    else:
        try:
            rows = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a JSON document ({exc})") from exc
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON array of objects")
        for index, row in enumerate(rows, start=1):
            yield make(row, index)


# Counting reads the file once more: worth it below this size, for an ETA.
_COUNT_MAX_BYTES = 256 * 1024 * 1024


def count_items(path: str | Path, *, max_bytes: int = _COUNT_MAX_BYTES) -> int | None:
    """Return about how many rows ``path`` holds, when that is cheap to know; else None.

    ``.jsonl`` and ``.txt``: non-blank lines. ``.csv``: rows (quoted
    multi-line fields counted right). ``.json``: None (the array is parsed
    when read; counting would parse it twice). Files over ``max_bytes`` bytes: None.
    Duplicates and bad rows are counted: this sizes a progress bar, nothing else.
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
