"""Rows into items: the text field or the whole row, its id, and the error item of a bad row."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from lc_async_pipelines.runner.inputs.items import Item, Row, item_id_for

__all__ = [
    "DEFAULT_FIELDS",
    "DRAIN_BYTES",
    "MakeRow",
    "bad_row",
    "lone_surrogate",
    "make_safely",
    "text_row",
    "whole_row",
]

MakeRow = Callable[[Any, int], Row]


# Tried in order when no --field is given.
DEFAULT_FIELDS = ("input", "text", "topic", "prompt", "document", "article")
DRAIN_BYTES = 1024 * 1024  # chunk size while skipping the rest of an oversized row


def bad_row(line: int, cause: str) -> Row:
    return Item(f"line-{line}", line, "", f"line {line}: {cause}"), None


def whole_row(
    row: Any, line: int, id_field: str | None, text_key: str, keep: frozenset[str] | None
) -> Row:
    if isinstance(row, str):
        row = {text_key: row}
    if not isinstance(row, dict):
        return bad_row(line, "expected an object or a string")
    row_id = row.get(id_field) if id_field else None
    if keep is not None:  # the chain reads these fields only: the rest is not its input
        row = {k: v for k, v in row.items() if k in keep}
    content = item_id_for(row)
    return Item(str(row_id) if row_id not in (None, "") else content, line, row), content


def text_row(row: Any, line: int, field: str | None, id_field: str | None) -> Row:
    if isinstance(row, str):
        text: Any = row
        row_id = None
    elif isinstance(row, dict):
        name = field or next((f for f in DEFAULT_FIELDS if f in row), None)
        if name is None or name not in row:
            wanted = field or " or ".join(DEFAULT_FIELDS)
            return bad_row(line, f"missing field {wanted!r}")
        text = row[name]
        row_id = row.get(id_field) if id_field else None
    else:
        return bad_row(line, "expected an object or a string")
    if not isinstance(text, str):
        return bad_row(line, "field is not text")
    if not text or text.isspace():
        return bad_row(line, "empty text")
    content = item_id_for(text)
    return Item(str(row_id) if row_id not in (None, "") else content, line, text), content


def lone_surrogate(value: Any) -> str | None:
    r"""The first lone surrogate in a row's strings and keys, as ``"\udXXX"``; None if none.

    JSON may escape half of a UTF-16 pair (``"\ud83d"``): ``json.loads``
    accepts it, but it is not text, and UTF-8 (the records, the request to the
    model) cannot encode it.
    """
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return f"\\u{ord(value[exc.start]):04x}"
        return None
    parts: Iterable[Any] = ()
    if isinstance(value, dict):
        parts = itertools.chain(value.keys(), value.values())
    elif isinstance(value, list):
        parts = value
    return next((found for part in parts if (found := lone_surrogate(part))), None)


def make_safely(make: MakeRow, row: Any, line: int) -> Row:
    try:
        found = lone_surrogate(row)
        if found is not None:
            return bad_row(
                line, f"holds a lone surrogate ({found}): half of a UTF-16 pair, not text"
            )
        return make(row, line)
    except (RecursionError, ValueError, TypeError) as exc:  # e.g. an id too long to print
        return bad_row(line, f"cannot use the row ({type(exc).__name__})")
