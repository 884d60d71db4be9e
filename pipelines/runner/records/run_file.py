"""A session's hold on its output: :func:`open_run` checks, resumes or restarts, and locks it.

:func:`open_run` takes the lock, refuses a file that is not ours or belongs to
another run (changing nothing), moves an old run aside on restart (never
deletes), and on resume compacts the records; :class:`RunFile` is the open
session, which :meth:`RunFile.finish` closes with the whole run's summary (and,
for a ``.csv`` or ``.parquet`` output, the table made from the records).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from lc_async_pipelines.errors import ConfigurationError, OutputWriteError
from lc_async_pipelines.runner.records.files import (
    RunLock,
    fsync_dir,
    rewrite_without,
    write_atomic,
)
from lc_async_pipelines.runner.records.manifest import (
    RunManifest,
    manifest_text,
    other_run,
    read_manifest,
)
from lc_async_pipelines.runner.records.paths import (
    SIDECARS,
    batches_path,
    lock_path,
    manifest_path,
    records_path,
    staging_path,
    summary_path,
)
from lc_async_pipelines.runner.records.scan import ForeignFile, RecordScan, scan_records
from lc_async_pipelines.runner.records.table import TableInfo, write_table
from lc_async_pipelines.runner.records.totals import whole_run_summary

if TYPE_CHECKING:
    from lc_async_pipelines.runner.summary import RunSummary

__all__ = ["PriorTotals", "RunFile", "open_run"]


@dataclass(frozen=True)
class PriorTotals:
    """What the earlier sessions left in the records file, as :func:`open_run` found it.

    Attributes:
        sessions: sessions before this one (an adopted file without a manifest counts 1).
        wall_s: wall time of those of them that finished, seconds.
        done: done records kept (each item once); their ids are ``RunFile.done_ids``.
        input_tokens: input tokens of the kept records.
        output_tokens: output tokens of the kept records.
        total_tokens: total tokens of the kept records.
        cost_usd: cost of the kept records, USD (records without a cost count 0).
        dropped_failed: failed records dropped (their items run again).
        dropped_duplicates: repeated done records of an item dropped.
        dropped_partial: 1 when a partial last line left by a kill was cut, else 0.
    """

    sessions: int = 0
    wall_s: float = 0.0
    done: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    dropped_failed: int = 0
    dropped_duplicates: int = 0
    dropped_partial: int = 0

    @property
    def dropped(self) -> int:
        """Lines dropped by the resume, all reasons together."""
        return self.dropped_failed + self.dropped_duplicates + self.dropped_partial


class RunFile:
    """An output opened for a session by :func:`open_run`; a context manager.

    While open, the session holds ``OUTPUT.lock``. Leaving the ``with`` block
    (or :meth:`close`) closes :attr:`out` and releases the lock.

    Attributes:
        output: the output as given, made absolute: the records file, or a
            table (``.csv``, ``.parquet``) written from them by :meth:`finish`.
        records: the records file: ``output``, or ``OUTPUT.records.jsonl``
            beside a table.
        table: ``output`` when it is a table, else None.
        table_info: what :meth:`finish` wrote to the table; None before.
        manifest: this session's manifest, as written (``sessions`` counts it).
        previous: the manifest found beside ``output``; None for a new run, a
            restart, or an adopted file (records without a manifest).
        adopted: True when ``output`` held records but no manifest (a file
            written before manifests existed); it was taken as this run's.
        backup: where a restart moved the old ``output`` (its sidecars beside
            it, ``BACKUP.manifest.json``, ``BACKUP.summary.json``); else None.
        done_ids: ids of the items done in earlier sessions: skip them.
        prior: the earlier sessions' totals and what the resume dropped.
        out: :attr:`records`, open for appending (text, UTF-8).
    """

    def __init__(
        self,
        output: Path,
        manifest: RunManifest,
        *,
        previous: RunManifest | None,
        adopted: bool,
        backup: Path | None,
        done_ids: frozenset[str],
        prior: PriorTotals,
        lock: RunLock,
    ) -> None:
        self.output = output
        self.records = records_path(output)
        self.table = output if self.records != output else None
        self.table_info: TableInfo | None = None
        self.manifest = manifest
        self.previous = previous
        self.adopted = adopted
        self.backup = backup
        self.done_ids = done_ids
        self.prior = prior
        self._lock = lock
        self.out: TextIO = self.records.open("a", encoding="utf-8")
        try:
            lock.cover(self.out.fileno())
        except BaseException:
            self.out.close()
            raise

    @property
    def summary_path(self) -> Path:
        """Where :meth:`finish` writes the whole run's summary: ``OUTPUT.summary.json``."""
        return summary_path(self.output)

    def finish(self, session: RunSummary, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the whole run's summary and count this session's wall time in the manifest.

        Flushes :attr:`out`, totals every record in the file
        (:func:`whole_run_summary`), writes ``OUTPUT.summary.json`` atomically,
        then the manifest with ``wall_s`` grown by this session's; for a
        table output, then the table from every record (:func:`write_table`,
        atomically; the input's columns from the manifest's input file).

        Args:
            session: this session's totals, from ``write_records``.
            extra: this session's further figures (``requests_sent``,
                ``cache_hits``), added to the session's part of the summary.

        Returns:
            The summary as written (see :func:`whole_run_summary`); under
            ``"session"`` it also has ``resumed_done`` and the ``dropped_*``
            counts of this session's resume.

        Raises:
            ConfigurationError: a ``.parquet`` table and no pyarrow installed
                (the records and summary are written; ``pipelines export``
                makes the table later).
            OutputWriteError: a file cannot be written (a full disk); the
                records stay, and the file being replaced is left whole.
        """
        try:
            return self._finish(session, extra)
        except OSError as exc:
            if isinstance(exc, OutputWriteError):
                raise
            raise OutputWriteError.of(exc.filename or self.output, exc) from exc

    def _finish(self, session: RunSummary, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        self.out.flush()
        resume = {
            "resumed_done": self.prior.done,
            "dropped_failed": self.prior.dropped_failed,
            "dropped_duplicates": self.prior.dropped_duplicates,
            "dropped_partial": self.prior.dropped_partial,
        }
        summary = whole_run_summary(
            self.records,
            session,
            sessions=self.manifest.sessions,
            previous_wall_s=self.prior.wall_s,
            extra={**(extra or {}), **resume},
        )
        write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")
        self.manifest = replace(self.manifest, wall_s=self.prior.wall_s + session.wall_s)
        write_atomic(manifest_path(self.output), manifest_text(self.manifest))
        if self.table is not None:
            self.table_info = write_table(
                self.records, self.table, input_path=Path(self.manifest.input_resolved)
            )
        return summary

    def close(self) -> None:
        """Close :attr:`out` and release the lock (idempotent)."""
        try:
            # After a full disk, closing flushes the rest of a line cut short and may
            # fail again: that line is the last, and the next session drops it.
            with contextlib.suppress(OSError):
                self.out.close()
        finally:
            self._lock.release()

    def __enter__(self) -> RunFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _backup_name(output: Path) -> Path:
    """A free ``OUTPUT.bak-YYYYmmdd-HHMMSS[-N]`` (its sidecar names free too)."""
    stem = f"{output.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        candidate = output.with_name(stem if n == 1 else f"{stem}-{n}")
        names = [candidate] + [candidate.with_name(candidate.name + s) for s in SIDECARS]
        if not any(os.path.lexists(name) for name in names):
            return candidate
    msg = f"{output}: no free backup name like {stem}"  # pragma: no cover
    raise ConfigurationError(msg)


def _move_aside(output: Path) -> Path | None:
    """Rename ``output`` and its sidecars to a backup; return it (None: nothing to move).

    The records go first: a kill between renames leaves at worst a stale
    table or sidecar beside no records, which the next session replaces.
    """
    moves = [(output.with_name(output.name + s), s) for s in SIDECARS] + [(output, "")]
    records = records_path(output)
    moves.sort(key=lambda move: move[0] != records)  # stable: the records first
    if not any(path.exists() for path, _ in moves):
        return None
    backup = _backup_name(output)
    for path, suffix in moves:
        if path.exists():
            os.rename(path, backup.with_name(backup.name + suffix))
    fsync_dir(output.parent)
    return backup


def open_run(output: Path, manifest: RunManifest, *, restart: bool) -> RunFile:
    """Open ``output`` for a session of the run ``manifest`` describes.

    In order: take ``OUTPUT.lock`` and a lock on the records file itself (both
    non-blocking; the second is keyed by the file's device and inode, so a hard
    link to it is refused too); check what is there; on
    restart move the old run aside; on resume compact the records; write the
    manifest; open the records for appending. A refusal changes nothing (the
    lock file, created for the check, is removed again).

    - Nothing there: a new run (``sessions`` 1).
    - Records and a manifest with the same ``fingerprint`` and ``model``: a
      resume. Each done record is kept once; failed records, repeated done
      records and a partial last line (a kill mid-write) are dropped and
      counted in :attr:`RunFile.prior`, the file rewritten atomically.
      ``sessions`` grows by one, ``created_at`` and ``wall_s`` carry over.
    - Records and no manifest (written before manifests): adopted as this run's.
    - ``OUTPUT`` a table (``.csv``, ``.parquet``): the records are
      ``OUTPUT.records.jsonl`` (:func:`records_path`), resumed as above; a
      table there without its records is not this run's and is refused.
    - ``restart=True``: ``OUTPUT``, ``OUTPUT.records.jsonl``, ``OUTPUT.manifest.json``,
      ``OUTPUT.summary.json`` and ``OUTPUT.batches.json`` are renamed to
      ``OUTPUT.bak-YYYYmmdd-HHMMSS`` (``-2``, ``-3`` ... when taken) and its
      sidecars; nothing is deleted; :attr:`RunFile.backup` says where. A file
      that is not a records file is refused even then.

    Stale ``OUTPUT.tmp`` / ``OUTPUT.manifest.json.tmp`` (a kill before their
    ``os.replace``) are removed: the file they were to replace is whole.

    Args:
        output: the records file (its folder must exist).
        manifest: this run, from :meth:`RunManifest.new`.
        restart: start over, keeping the old run as a backup.

    Returns:
        The open :class:`RunFile`; use it in ``with``, or call ``close()``.

    Raises:
        ConfigurationError: (one line each)
            ``OUTPUT is in use by another run (pid N)``;
            ``OUTPUT is in use by another run that writes the same file under
            another name (a hard link)``;
            ``OUTPUT: is not a regular file``;
            ``OUTPUT: line N is not a record (why); not a records file, left as it is``;
            ``OUTPUT: exists and was not written by a run (no OUTPUT.records.jsonl
            beside it); give another output``;
            ``OUTPUT holds the records of another run (chain ... there, ... here);
            give another output, or run again with --restart to move them aside``;
            ``OUTPUT.manifest.json: not a run manifest (why); run again with
            --restart to move it aside``.
    """
    if output.exists() and not output.is_file():
        msg = f"{output}: is not a regular file"
        raise ConfigurationError(msg)
    # The real file: a symlink or another spelling of the path must find the same
    # lock and manifest, and a rewrite must replace the file, not the link.
    output = Path(os.path.realpath(output))
    lock = RunLock(lock_path(output), output)
    try:
        lock.hold_records(records_path(output))  # by identity: a hard link finds it too
        return _open_locked(output, manifest, restart=restart, lock=lock)
    except BaseException:
        lock.release()
        raise


def _found_state(
    output: Path, manifest: RunManifest, *, restart: bool
) -> tuple[bool, RecordScan, RunManifest | None]:
    """Check what is at ``output``: (records there, their scan, the manifest beside them).

    Raises:
        ConfigurationError: not a records file, not a manifest, or another run's records.
    """
    records = records_path(output)
    exists = records.is_file()
    if records != output and os.path.lexists(output) and not exists:
        msg = (
            f"{output}: exists and was not written by a run (no {records.name} beside "
            "it); give another output"
        )
        raise ConfigurationError(msg)
    scan = RecordScan()
    if exists:
        try:
            scan = scan_records(records)
        except ForeignFile as exc:
            msg = f"{records}: {exc}; not a records file, left as it is"
            raise ConfigurationError(msg) from None
    try:
        previous = read_manifest(output)
    except ValueError as exc:
        if not restart and exists:
            path = manifest_path(output)
            msg = f"{path}: not a run manifest ({exc}); run again with --restart to move it aside"
            raise ConfigurationError(msg) from None
        previous = None  # moved aside below, or stale beside no records: replaced
    if exists and previous is not None and not restart:
        other = other_run(previous, manifest)
        if other is not None:
            msg = (
                f"{output} holds the records of another run ({other}); "
                "give another output, or run again with --restart to move them aside"
            )
            raise ConfigurationError(msg)
    return exists, scan, previous


def _resumed(
    manifest: RunManifest, previous: RunManifest | None, scan: RecordScan
) -> tuple[RunManifest, PriorTotals]:
    """This session's manifest when it resumes, and what the earlier sessions left."""
    sessions = previous.sessions if previous is not None else 1
    wall_s = previous.wall_s if previous is not None else 0.0
    if previous is not None:
        manifest = replace(manifest, created_at=previous.created_at)
    manifest = replace(manifest, sessions=sessions + 1, wall_s=wall_s)
    prior = PriorTotals(
        sessions=sessions,
        wall_s=wall_s,
        done=len(scan.done),
        input_tokens=scan.input_tokens,
        output_tokens=scan.output_tokens,
        total_tokens=scan.total_tokens,
        cost_usd=scan.cost_usd,
        dropped_failed=scan.failed,
        dropped_duplicates=scan.duplicates,
        dropped_partial=scan.partial,
    )
    return manifest, prior


def _open_locked(output: Path, manifest: RunManifest, *, restart: bool, lock: RunLock) -> RunFile:
    """Open ``output`` under ``lock``: check, then restart or resume, then write the manifest."""
    exists, scan, previous = _found_state(output, manifest, restart=restart)
    # Checked: from here on we change things, each step whole under a kill.
    records = records_path(output)
    staged = [staging_path(output), staging_path(manifest_path(output))]
    staged += [staging_path(batches_path(output)), staging_path(records)]
    for stale in staged:
        stale.unlink(missing_ok=True)
    backup: Path | None = None
    adopted = False
    prior = PriorTotals()
    if restart:
        backup = _move_aside(output)
        previous = None
        manifest = replace(manifest, sessions=1, wall_s=0.0)
    elif exists:
        if scan.rewrite:
            rewrite_without(records, scan.drop)
        adopted = previous is None
        manifest, prior = _resumed(manifest, previous, scan)
    else:
        previous = None  # a manifest beside no records describes nothing
        manifest = replace(manifest, sessions=1, wall_s=0.0)
    write_atomic(manifest_path(output), manifest_text(manifest))
    return RunFile(
        output,
        manifest,
        previous=previous,
        adopted=adopted,
        backup=backup,
        done_ids=frozenset(scan.done) if exists and not restart else frozenset(),
        prior=prior,
        lock=lock,
    )
