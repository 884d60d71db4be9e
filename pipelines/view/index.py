"""The table of records, served in pages: an index of line offsets, built as the file grows.

Each record costs 8 bytes of index (its line's offset) and 1 byte of flag
(failed or not), so a 1,000,000-record run needs about 9 MB, and a page is
read by seeking to its lines. A search scans the records in order from a
cursor, within a byte budget per request, and says where to go on.
"""

from __future__ import annotations

import bisect
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lc_async_pipelines.runner.records.scan import parse_line, unicode_safe

__all__ = ["CELL_CHARS", "LineIndex", "SearchPage", "read_rows", "row_of", "search"]

CELL_CHARS = 2_000
"""Characters of input, output or error a row carries; longer text is cut, marked with …."""


class LineIndex:
    """Where each record of the file starts, and which ones failed, by record number (0-based)."""

    def __init__(self) -> None:
        self.offsets = array("q")
        self.failed = array("q")  # record numbers of failed records, ascending

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, offset: int, *, failed: bool) -> None:
        """Index the record whose line starts at ``offset`` (bytes)."""
        if failed:
            self.failed.append(len(self.offsets))
        self.offsets.append(offset)

    def clear(self) -> None:
        """Forget every record (the file was replaced)."""
        self.offsets = array("q")
        self.failed = array("q")

    def count(self, *, failed_only: bool) -> int:
        """Return how many records (or failed records) are indexed."""
        return len(self.failed) if failed_only else len(self.offsets)

    def page(self, number: int, size: int, *, failed_only: bool) -> list[tuple[int, int]]:
        """Return (record number, offset) of page ``number`` (1-based) of ``size`` records."""
        start = (number - 1) * size
        if failed_only:
            chosen = self.failed[start : start + size]
            return [(n, self.offsets[n]) for n in chosen]
        return [(n, self.offsets[n]) for n in range(start, min(start + size, len(self.offsets)))]


def row_of(record: dict[str, Any], number: int) -> dict[str, Any]:
    """Return the table row of ``record`` (record ``number``, 0-based), text cut to a cell.

    Keys: ``n`` (1-based), ``id``, ``line`` (in the input), ``input``,
    ``output`` (text; structured output as JSON), ``error`` (``"Class:
    message"`` or None), ``attempts``, ``latency_s``, ``ttft_s``, ``cost_usd``, ``tokens``,
    ``service_tier`` (the tier that answered: ``"flex"``, ``"batch"``, ``"flex,default"``
    when an item's calls went both ways; None when the provider named none).
    """
    error = record.get("error")
    usage = record.get("usage")
    return {
        "n": number + 1,
        "id": record.get("id"),
        "line": record.get("line"),
        "input": _cell(record.get("input")),
        "output": None if record.get("output") is None else _cell(record.get("output")),
        "error": None if error is None else _cell(_error_text(error)),
        "attempts": record.get("attempts"),
        "latency_s": record.get("latency_s"),
        "ttft_s": record.get("ttft_s"),
        "cost_usd": record.get("cost_usd"),
        "tokens": usage.get("total_tokens") if isinstance(usage, dict) else None,
        "service_tier": record.get("service_tier"),
    }


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', '?')}: {error.get('message', '')}"
    return str(error)


def _cell(value: Any) -> str:
    value = unicode_safe(value)  # a page is UTF-8: a lone surrogate would fail the response
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def read_rows(path: Path, wanted: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Read the records at ``wanted`` (record number, offset) and return their rows.

    A line that no longer parses (the file changed under the index) is left out.
    """
    rows = []
    with path.open("rb") as fh:
        for number, offset in wanted:
            fh.seek(offset)
            record, _ = parse_line(fh.readline())
            if record is not None:
                rows.append(row_of(record, number))
    return rows


@dataclass
class SearchPage:
    """Matches of one search request, and where the next request goes on.

    Attributes:
        rows: matching rows, in record order.
        next: record number to search on from; None when every indexed record was searched.
        scanned: records searched so far, this request's included (from 0 to ``next``).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    next: int | None = None
    scanned: int = 0


def search(
    path: Path,
    index: LineIndex,
    query: str,
    *,
    start: int,
    size: int,
    failed_only: bool,
    budget_bytes: int = 32 << 20,
) -> SearchPage:
    """Find records whose id, input, output or error contains ``query`` (case-insensitive).

    Scans from record ``start`` in record order until ``size`` matches or
    ``budget_bytes`` of the file have been read, so one request costs a
    bounded time whatever the file's size.

    Args:
        path: the records file.
        index: its index (the records to search).
        query: the text to find.
        start: record number to start from (0-based).
        size: matches wanted.
        failed_only: search failed records only.
        budget_bytes: bytes read at most by this request (at least one record).

    Returns:
        The matches and the record number to go on from.
    """
    needle = query.casefold()
    quick = json.dumps(needle, ensure_ascii=False)[1:-1]  # as the line spells it
    result = SearchPage(next=None)
    spent = 0
    with path.open("rb") as fh:
        for number in _numbers_from(index, start, failed_only=failed_only):
            if len(result.rows) >= size or spent >= budget_bytes:
                result.next = number
                break
            raw = _line_at(fh, index.offsets[number])
            spent += len(raw)
            if _matches(raw, quick, needle):
                record, _ = parse_line(raw)
                if record is not None and _fields_match(record, needle):
                    result.rows.append(row_of(record, number))
    result.scanned = len(index) if result.next is None else result.next
    return result


def _numbers_from(index: LineIndex, start: int, *, failed_only: bool) -> Iterator[int]:
    """Record numbers from ``start`` on, all or failed only, as the index holds them now."""
    if not failed_only:
        yield from range(start, len(index))
        return
    at = bisect.bisect_left(index.failed, start)
    yield from index.failed[at:]


def _line_at(fh: BinaryIO, offset: int) -> bytes:
    if fh.tell() != offset:
        fh.seek(offset)
    return fh.readline()


def _matches(raw: bytes, quick: str, needle: str) -> bool:
    """A cheap first test on the raw line; the fields are checked after it."""
    if quick.isascii():
        return quick.encode() in raw.lower()
    return quick in raw.decode("utf-8", "replace").casefold()


def _fields_match(record: dict[str, Any], needle: str) -> bool:
    error = record.get("error")
    texts = [record.get("id"), record.get("input"), record.get("output")]
    texts.append(_error_text(error) if error is not None else None)
    for value in texts:
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if needle in text.casefold():
            return True
    return False
