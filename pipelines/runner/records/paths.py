"""Where a run keeps its files: ``OUTPUT`` and the sidecars beside it.

``OUTPUT.manifest.json`` (the run), ``OUTPUT.lock`` (the session writing it),
``OUTPUT.summary.json`` (the whole run's totals), ``OUTPUT.batches.json``
(the Batch API's batches), ``OUTPUT.lanes.json`` (the items a lanes run
gave to its batch lane) and ``PATH.tmp`` (a file being replaced). When
``OUTPUT`` is a table (``.csv``, ``.parquet``), the records it is made from
are kept beside it in ``OUTPUT.records.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SIDECARS",
    "TABLE_FORMATS",
    "batches_path",
    "lanes_path",
    "lock_path",
    "manifest_path",
    "records_path",
    "staging_path",
    "summary_path",
]

SIDECARS = (".records.jsonl", ".manifest.json", ".summary.json", ".batches.json", ".lanes.json")
"""The files beside ``OUTPUT`` that belong to its run (moved aside with it on restart)."""

TABLE_FORMATS = (".csv", ".parquet")
"""Suffixes of an ``OUTPUT`` written as a table, from records kept beside it."""


def records_path(output: Path) -> Path:
    """Return where the records of ``output`` are appended.

    ``OUTPUT`` itself, except for a table (a suffix in :data:`TABLE_FORMATS`,
    any case): ``OUTPUT.records.jsonl``.
    """
    if output.suffix.lower() in TABLE_FORMATS:
        return output.with_name(output.name + ".records.jsonl")
    return output


def manifest_path(output: Path) -> Path:
    """Return where the run manifest of ``output`` goes: ``OUTPUT.manifest.json``."""
    return output.with_name(output.name + ".manifest.json")


def lock_path(output: Path) -> Path:
    """Return the lock file of ``output``: ``OUTPUT.lock``."""
    return output.with_name(output.name + ".lock")


def staging_path(path: Path) -> Path:
    """Return where a new ``path`` is written before it replaces the old: ``PATH.tmp``."""
    return path.with_name(path.name + ".tmp")


def summary_path(output: Path) -> Path:
    """Return where the run summary JSON goes beside ``output``."""
    return output.with_name(output.name + ".summary.json")


def batches_path(output: Path) -> Path:
    """Return where the batches of the run writing ``output`` are kept: ``OUTPUT.batches.json``."""
    return output.with_name(output.name + ".batches.json")


def lanes_path(output: Path) -> Path:
    """Return where a lanes run keeps the items it gave its batch lane: ``OUTPUT.lanes.json``."""
    return output.with_name(output.name + ".lanes.json")
