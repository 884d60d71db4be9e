"""Where a run keeps its files: ``OUTPUT`` and the sidecars beside it.

``OUTPUT.manifest.json`` (the run), ``OUTPUT.lock`` (the session writing it),
``OUTPUT.summary.json`` (the whole run's totals), ``OUTPUT.batches.json``
(the Batch API's batches) and ``PATH.tmp`` (a file being replaced).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SIDECARS",
    "batches_path",
    "lock_path",
    "manifest_path",
    "staging_path",
    "summary_path",
]

SIDECARS = (".manifest.json", ".summary.json", ".batches.json")
"""The files beside ``OUTPUT`` that belong to its run (moved aside with it on restart)."""


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
