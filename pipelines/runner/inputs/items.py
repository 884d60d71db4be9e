"""An item of work: :class:`Item`, its content id, and :class:`ItemReader`, which counts repeats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import InputError

__all__ = ["Item", "ItemReader", "Row", "item_id_for"]


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
Row = tuple[Item, str | None]


_DIGEST_MASK = (1 << 64) - 1


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

    def __init__(self, path: Path, rows: Iterator[Row]) -> None:
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
