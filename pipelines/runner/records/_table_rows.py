"""The rows of a table made from a records file: one per item, in input order, flattened.

A first pass indexes the records file (line, done or failed, byte offset: one
integer per record); the rows are then read back by offset in the input's
order and joined, by line, with the input file's rows read whole. Memory: the
index, about 40 bytes a record; never the records themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import InputError
from lc_async_pipelines.runner.inputs import Item, read_items
from lc_async_pipelines.runner.records.scan import count_of, parse_line, unicode_safe

__all__ = ["FIXED", "FlatRow", "Layout", "RecordIndex", "cell_text", "flat_rows", "index_records"]

_OFFSET_BITS = 40  # a records file up to 1 TiB
_FAILED_BIT = 1 << _OFFSET_BITS
_LINE_SHIFT = _OFFSET_BITS + 1

FIXED: dict[str, str] = {
    "error": "str",
    "error_class": "str",
    "attempts": "int",
    "cost_usd": "float",
    "latency_s": "float",
    "ttft_s": "float",
    "queued_s": "float",
    "input_tokens": "int",
    "output_tokens": "int",
    "total_tokens": "int",
}
"""The columns every table has after the input's and the output's, with their kinds."""

_RECORD_NAMES = frozenset({"id", "output", *FIXED})
_FROM_RECORD = ("attempts", "cost_usd", "latency_s", "ttft_s", "queued_s")
_FROM_USAGE = ("input_tokens", "output_tokens", "total_tokens")


@dataclass
class RecordIndex:
    """Where each record of a records file is, sorted by (input line, done first, offset).

    Attributes:
        keys: ``line << 41 | failed << 40 | offset`` per record, sorted.
        unreadable: lines that are not records (a partial last line), skipped.
    """

    keys: list[int] = field(default_factory=list)
    unreadable: int = 0


def index_records(records: Path) -> RecordIndex:
    """Index ``records`` in one streaming pass (see :class:`RecordIndex`)."""
    index = RecordIndex()
    offset = 0
    with records.open("rb") as fh:
        for raw in fh:
            record, _ = parse_line(raw)
            if record is None:
                index.unreadable += int(bool(raw.strip()))
            else:
                failed = record["error"] is not None
                index.keys.append(
                    (count_of(record.get("line")) << _LINE_SHIFT) | (failed * _FAILED_BIT) | offset
                )
            offset += len(raw)
    if offset >= _FAILED_BIT:  # pragma: no cover - a 1 TiB records file
        raise InputError(f"{records}: over 1 TiB; too large to make a table of")
    index.keys.sort()
    return index


@dataclass
class FlatRow:
    """One table row: the id, the input's columns, the output's, and the fixed ones."""

    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    fixed: dict[str, Any]
    from_input_file: bool


def _kind(value: Any) -> str | None:
    """The column kind a value asks for: bool, int, float or str (anything else as JSON)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**63) <= value < 2**63 else "str"
    if isinstance(value, float):
        return "float"
    return "str"


def _merge(old: str | None, new: str | None) -> str | None:
    if old is None or old == new:
        return new if old is None else old
    if new is None:
        return old
    return "float" if {old, new} == {"int", "float"} else "str"


@dataclass
class Layout:
    """The columns of a table and their kinds, learnt from every row (:meth:`observe`).

    A column's kind is ``bool``, ``int``, ``float`` or ``str``; ints and
    floats together make ``float``, any other mix ``str`` (values not text
    written as JSON). A column with only empty values is ``str``. The input's
    own ``id`` column (``input.id``) is left out when it only repeats ``id``.
    """

    inputs: dict[str, str | None] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)
    input_id_differs: bool = False

    def observe(self, row: FlatRow) -> None:
        """Learn the columns of ``row`` and the kinds of its values."""
        for known, values in ((self.inputs, row.inputs), (self.outputs, row.outputs)):
            for name, value in values.items():
                known[name] = _merge(known.get(name), _kind(value))
        own_id = row.inputs.get("input.id")
        if own_id not in (None, "") and str(own_id) != row.id:
            self.input_id_differs = True

    def columns(self) -> list[tuple[str, str]]:
        """Return (name, kind) of every column, in table order."""
        flexible = {**self.inputs, **self.outputs}
        if not self.input_id_differs:
            flexible.pop("input.id", None)
        return [
            ("id", "str"),
            *((name, kind or "str") for name, kind in flexible.items()),
            *FIXED.items(),
        ]


def _input_rows(input_path: Path | None) -> Iterator[Item]:
    """The input file's rows, whole, in order; none when it cannot be read any more."""
    if input_path is None:
        return
    try:
        yield from read_items(input_path, whole_rows=True, id_field=None)
    except InputError:
        return  # gone, changed format or unreadable: the records' own inputs stand in


def _matches(record: dict[str, Any], row: Any) -> bool:
    """True when the input ``row`` is what the record was made from."""
    if not isinstance(row, dict):
        return False
    given = record.get("input")
    if isinstance(given, dict):
        return all(row.get(key) == value for key, value in given.items())
    if given == "" and record["error"] is not None:
        return True  # an unusable row: its line is all that ties it
    return any(value == given for value in row.values())


def _input_columns(values: dict[str, Any]) -> dict[str, Any]:
    """The input's columns, a name the record's columns use taken as ``input.NAME``."""
    return {
        (f"input.{k}" if k in _RECORD_NAMES or k.startswith("output.") else k): v
        for k, v in values.items()
    }


def _number(value: Any, kind: str) -> int | float | None:
    """``value`` as a number of ``kind`` (``int`` or ``float``), None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == "float":
        return float(value)
    return value if isinstance(value, int) else None


def _flatten(record: dict[str, Any], row: Any) -> FlatRow:
    """One record (and its input row, when it matches) as a :class:`FlatRow`."""
    record = unicode_safe(record)
    joined = _matches(record, row)
    given = record.get("input")
    if joined:
        inputs = _input_columns(row)
    else:
        inputs = _input_columns(given if isinstance(given, dict) else {"input": given})
    output = record.get("output")
    if isinstance(output, dict):  # structured output: one column per top-level field
        outputs = {f"output.{key}": value for key, value in output.items()}
    else:
        outputs = {} if output is None else {"output": output}
    error = record["error"]
    usage = record.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    fixed = {
        "error": error.get("message") if error else None,
        "error_class": error.get("type") if error else None,
        **{name: _number(record.get(name), FIXED[name]) for name in _FROM_RECORD},
        **{name: _number(usage.get(name), "int") for name in _FROM_USAGE},
    }
    return FlatRow(str(record["id"]), inputs, outputs, fixed, joined)


def flat_rows(records: Path, index: RecordIndex, input_path: Path | None) -> Iterator[FlatRow]:
    """Yield each item's row once, in input order: a done record before a failed one.

    Args:
        records: the records file ``index`` was made from.
        index: from :func:`index_records`.
        input_path: the input file, for the input's own columns (joined by
            line, when its row is what the record was made from); None, or a
            file gone or changed: the record's own ``input`` stands in.
    """
    rows = _input_rows(input_path)
    row: Item | None = next(rows, None)
    last_id: str | None = None
    with records.open("rb") as fh:
        for key in index.keys:
            fh.seek(key & (_FAILED_BIT - 1))
            record, _ = parse_line(fh.readline())
            if record is None or record["id"] == last_id:
                continue  # changed under us (a rewrite), or the item's failed record
            last_id = record["id"]
            line = key >> _LINE_SHIFT
            while row is not None and row.line < line:
                row = next(rows, None)
            matched = row.input if row is not None and row.line == line else None
            yield _flatten(record, matched)


def cell_text(value: Any) -> str:
    """A value as CSV text: empty for null, ``true``/``false``, JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)
