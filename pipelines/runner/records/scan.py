"""One streaming pass over a records file: what to keep, what to drop, and why.

A resume keeps each done record once, drops failed records (their items run
again), repeated done records and a partial last line left by a kill; a line
that is not a record means the file is not ours, and nothing is changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.records.files import rewrite_without

__all__ = [
    "ForeignFile",
    "RecordScan",
    "count_of",
    "done_ids",
    "numbered_lines",
    "parse_line",
    "prepare_resume",
    "scan_records",
    "unicode_safe",
    "usd_of",
]

_RECORD_KEYS = ("id", "output", "error")


_RECORD_START = b'{"id"'  # how every line written by ``write_records`` begins


class ForeignFile(Exception):
    """A line of the records file is not a record: the file is not ours."""


def _record_problem(value: Any) -> str | None:
    """Return why ``value`` (a parsed line) is not a record, or None when it is one."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    missing = [key for key in _RECORD_KEYS if key not in value]
    if missing:
        return "no " + ", ".join(repr(key) for key in missing)
    if not isinstance(value["id"], str):
        return "'id' is not a string"
    if value["error"] is not None and not isinstance(value["error"], dict):
        return "'error' is neither null nor an object"
    return None


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one line: (the record, None), or (None, why it is not a record)."""
    if not raw.strip():
        return None, "blank"
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError:
        return None, "not JSON"
    problem = _record_problem(value)
    return (value, None) if problem is None else (None, problem)


_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_safe(value: Any) -> Any:
    """Return ``value`` with each lone surrogate replaced by U+FFFD, for output as UTF-8.

    A record can hold one: a model's reply escaping half a UTF-16 pair, kept by
    the records writer as an ASCII escape. Read back, it is a ``str`` that
    UTF-8 cannot encode, so a table or a page showing it would fail; the
    records file itself keeps it as it was.

    Args:
        value: a parsed record or any part of one (str, dict, list, number...).

    Returns:
        The same shape, strings (and keys) with U+FFFD in place of lone
        surrogates; ``value`` itself when it holds none.
    """
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {unicode_safe(key): unicode_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unicode_safe(item) for item in value]
    return value


def _cut_record(raw: bytes) -> bool:
    """True when ``raw`` (a last line without newline) can be the start of a record line."""
    text = raw.rstrip(b"\r")
    if text.startswith(b"{"):
        text = b"{" + text[1:].lstrip()
    return text.startswith(_RECORD_START) or _RECORD_START.startswith(text)


def numbered_lines(output: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw line) of ``output``, streaming."""
    with output.open("rb") as fh:
        yield from enumerate(fh, start=1)


@dataclass
class RecordScan:
    """One pass over a records file: what to keep, what to drop, and why."""

    done: set[str] = field(default_factory=set)
    drop: set[int] = field(default_factory=set)
    unterminated: bool = False  # a complete last record without its newline
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    failed: int = 0
    duplicates: int = 0
    partial: int = 0

    @property
    def rewrite(self) -> bool:
        """True when the file must be rewritten: lines to drop, or a last one to terminate."""
        return bool(self.drop) or self.unterminated


def scan_records(output: Path) -> RecordScan:
    """Read ``output`` once, streaming; keep the first done record of each id.

    Raises:
        ForeignFile: a line is not a record (the message names it and why).
    """
    scan = RecordScan()
    with output.open("rb") as fh:
        first = fh.read(1)
    if first and first != b"{":
        msg = "line 1 is not a record (it does not start with '{')"
        raise ForeignFile(msg)
    for number, raw in numbered_lines(output):
        complete = raw.endswith(b"\n")
        record, problem = parse_line(raw)
        if record is None:
            if not complete and _cut_record(raw):
                scan.drop.add(number)
                scan.partial = 1
                continue
            msg = f"line {number} is not a record ({problem})"
            raise ForeignFile(msg)
        if not complete:
            scan.unterminated = True
        if record["error"] is not None:
            scan.drop.add(number)
            scan.failed += 1
        elif record["id"] in scan.done:
            scan.drop.add(number)
            scan.duplicates += 1
        else:
            scan.done.add(record["id"])
            usage = record.get("usage")
            if isinstance(usage, dict):
                scan.input_tokens += count_of(usage.get("input_tokens"))
                scan.output_tokens += count_of(usage.get("output_tokens"))
                scan.total_tokens += count_of(usage.get("total_tokens"))
            scan.cost_usd += usd_of(record.get("cost_usd"))
    return scan


def count_of(value: Any) -> int:
    """Return ``value`` when it is a count (an ``int``, not a ``bool``), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usd_of(value: Any) -> float:
    """Return ``value`` as USD when it is a number (not a ``bool``), else 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def done_ids(output: Path) -> set[str]:
    """Return the ids of the items done in ``output``, changing nothing (for a dry run).

    Args:
        output: the records file (need not exist).

    Returns:
        Ids of done records (``error`` null); empty when ``output`` does not exist.

    Raises:
        ConfigurationError: a line is not a record (the file is not a records file).
    """
    if not output.is_file():
        return set()
    try:
        return scan_records(output).done
    except ForeignFile as exc:
        msg = f"{output}: {exc}; not a records file"
        raise ConfigurationError(msg) from None


def prepare_resume(output: Path) -> set[str]:
    """Make ``output`` ready to append to, and return the ids of items already done.

    Keeps each done record (``error`` null) once, drops failed records (their
    items run again) and a partial last line left by a kill, then rewrites the
    file atomically (temp file + ``fsync`` + ``os.replace``) so no item
    appears twice. Takes no lock and reads no manifest: :func:`open_run` does
    both.

    Args:
        output: the records file (need not exist).

    Returns:
        Ids whose records are done; an empty set when ``output`` does not exist.

    Raises:
        ConfigurationError: a line is not a record (the file is not a records
            file); nothing is changed.
    """
    if not output.is_file():
        return set()
    try:
        scan = scan_records(output)
    except ForeignFile as exc:
        msg = f"{output}: {exc}; not a records file, left as it is"
        raise ConfigurationError(msg) from None
    if scan.rewrite:
        rewrite_without(output, scan.drop)
    return scan.done
