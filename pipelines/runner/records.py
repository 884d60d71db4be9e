"""The records file: append-only JSON lines, repaired and compacted on resume.

A record is written with one ``write`` of a whole line and flushed, so after a
kill the file holds whole lines, except at most a partial last one, which
:func:`prepare_resume` cuts off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["prepare_resume"]


def prepare_resume(output: Path) -> set[str]:
    """Make ``output`` ready to append to, and return the ids of items already done.

    Keeps each done record (``error`` null) once, drops failed records (their
    items run again) and a partial last line left by a kill, then rewrites the
    file atomically (temp file + ``os.replace``) so no item appears twice.

    Returns:
        Ids whose records are done; an empty set when ``output`` does not exist.
    """
    if not output.is_file():
        return set()
    done: dict[str, str] = {}
    kept_all = True
    with output.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                kept_all = False  # partial last line from a kill
                break
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                kept_all = False
                continue
            if record.get("error") is None and "id" in record and record["id"] not in done:
                done[record["id"]] = raw.decode()
            else:
                kept_all = False
    if not kept_all:
        staged = output.with_name(output.name + ".tmp")
        with staged.open("w", encoding="utf-8") as fh:
            fh.writelines(done.values())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(staged, output)
    return set(done)
