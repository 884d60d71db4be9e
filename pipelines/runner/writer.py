"""Write records as JSON lines, one flushed line each, and total them in a :class:`RunSummary`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TextIO

from lc_async_pipelines.errors import OutputWriteError
from lc_async_pipelines.runner.record import Record
from lc_async_pipelines.runner.summary import RunSummary

__all__ = ["write_records"]


async def write_records(
    records: AsyncIterator[Record],
    out: TextIO,
    *,
    on_record: Callable[[Record], Awaitable[None] | None] | None = None,
) -> RunSummary:
    """Append each record to ``out`` as one JSON line, flushed at once, and total them.

    Returns:
        The run's :class:`RunSummary` (``wall_s`` measured over the whole write).

    Raises:
        OutputWriteError: a line cannot be written (a full disk, a quota): the
            records are closed first (``aclose``: the items in flight are
            cancelled), the lines written before stay; a line cut short is the
            last, which a resume drops.
    """
    summary = RunSummary()
    start = time.perf_counter()
    async for record in records:
        try:
            out.write(_line(record))
            out.flush()
        except OSError as exc:
            close = getattr(records, "aclose", None)
            if close is not None:
                await close()  # stop now: no record of the items in flight could be kept
            raise OutputWriteError.of(getattr(out, "name", "the records"), exc) from exc
        summary.add(record)
        if on_record is not None:
            result = on_record(record)
            if result is not None:
                await result
    summary.wall_s = time.perf_counter() - start
    return summary


def _line(record: Record) -> str:
    """The record's JSON line: UTF-8 text, or ASCII escapes where the text is not valid Unicode.

    A model's reply can hold a lone surrogate (the embedded model's JSON
    sometimes escapes half a pair of UTF-16), which UTF-8 cannot encode:
    escaped, the line stays valid JSON and loses nothing.
    """
    data = record.to_dict()
    line = json.dumps(data, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data) + "\n"
    return line
