"""The records file of a run: append-only JSON lines that belong to their run.

A record is written with one ``write`` of a whole line and flushed, so after a
kill the file holds whole lines, except at most a partial last one, which a
resume cuts off.

An output file belongs to its run. Beside ``OUTPUT`` (the records, one JSON
object a line, nothing else, so any JSON-lines reader keeps working):

- ``OUTPUT.manifest.json``: the :class:`RunManifest` (chain fingerprint,
  model, pipeline, input, sessions), written atomically;
- ``OUTPUT.lock``: held with ``fcntl.flock`` while a run writes, holding its
  pid; the kernel drops the lock when the process dies, even by ``kill -9``;
- ``OUTPUT.summary.json``: the whole run's totals (:func:`whole_run_summary`),
  written atomically at the end of each session;
- ``OUTPUT.batches.json``: with the Batch API, the batches the run submitted
  (:mod:`lc_async_pipelines.runner.batch_api`), so a resume waits on them
  instead of paying twice.

:func:`open_run` takes the lock, refuses a file that is not ours or belongs to
another run (changing nothing), moves an old run aside on restart (never
deletes), and on resume compacts the records. Every rewrite is a temp file,
``fsync``, ``os.replace``: a ``kill -9`` at any moment leaves the old file or
the new one, whole, and never loses a done record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.core import summary_path

if TYPE_CHECKING:
    from lc_async_pipelines.runner.core import RunSummary

__all__ = [
    "MANIFEST_FORMAT",
    "PriorTotals",
    "RunFile",
    "RunManifest",
    "RunTotals",
    "chain_fingerprint",
    "done_ids",
    "lock_path",
    "manifest_path",
    "open_run",
    "prepare_resume",
    "run_totals",
    "whole_run_summary",
    "write_atomic",
]

MANIFEST_FORMAT = 1
"""Version of the manifest layout; a newer one is refused rather than misread."""

_RECORD_KEYS = ("id", "output", "error")
_RECORD_START = b'{"id"'  # how every line written by ``write_records`` begins
_SIDECARS = (".manifest.json", ".summary.json", ".batches.json")


def manifest_path(output: Path) -> Path:
    """Return where the run manifest of ``output`` goes: ``OUTPUT.manifest.json``."""
    return output.with_name(output.name + ".manifest.json")


def lock_path(output: Path) -> Path:
    """Return the lock file of ``output``: ``OUTPUT.lock``."""
    return output.with_name(output.name + ".lock")


def _staging_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def chain_fingerprint(parts: Mapping[str, Any]) -> str:
    """Return the sha256 (hex) of what defines a chain, for :attr:`RunManifest.fingerprint`.

    Args:
        parts: JSON-able values that define the chain, e.g. ``{"target": "story",
            "options": {"max_words": 80}, "prompt": <prompt text>, "schema":
            <schema text>}``. Keys are sorted; values that are not JSON types
            are hashed by ``str()``.

    Returns:
        64 hex characters; equal parts give an equal fingerprint in any process.
    """
    canonical = json.dumps(
        parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunManifest:
    """What a records file belongs to, stored beside it as ``OUTPUT.manifest.json``.

    A resume must have the same ``fingerprint`` and ``model``; the other fields
    describe the run for people and tools. Build one with :meth:`new`;
    :func:`open_run` fills ``created_at``, ``sessions`` and ``wall_s`` from the
    manifest already there.

    Attributes:
        format: manifest layout version (:data:`MANIFEST_FORMAT`).
        pipeline: what runs: a registered name, ``module:attr``, or a prompt file path.
        fingerprint: sha256 hex over what defines the chain (target, options,
            prompt text, schema), computed by the caller (:func:`chain_fingerprint`).
        model: the model, stable across sessions and without secrets (name,
            provider or endpoint; no key, no port of a throwaway server).
        input: the input path as given.
        input_resolved: the input path made absolute.
        created_at: when the run's first session started (ISO 8601, UTC).
        sessions: sessions that opened this output, the current one included.
        wall_s: wall time of the sessions that finished (seconds; one killed
            by ``kill -9`` never finished and is not counted).
        options: the pipeline's options, for reading (the fingerprint covers them).
    """

    pipeline: str
    fingerprint: str
    model: str
    input: str
    input_resolved: str
    created_at: str
    sessions: int = 1
    wall_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    @classmethod
    def new(
        cls,
        *,
        pipeline: str,
        fingerprint: str,
        model: str,
        input: Path,
        options: Mapping[str, Any] | None = None,
    ) -> RunManifest:
        """Return the manifest of a session starting now.

        Args:
            pipeline: registered name, ``module:attr`` or prompt file path.
            fingerprint: sha256 hex of what defines the chain (:func:`chain_fingerprint`).
            model: stable model description without secrets.
            input: the input file, as given on the command line.
            options: the pipeline's options.
        """
        return cls(
            pipeline=pipeline,
            fingerprint=fingerprint,
            model=model,
            input=str(input),
            input_resolved=str(input.resolve()),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            options=dict(options or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as written to ``OUTPUT.manifest.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunManifest:
        """Read a manifest written by :meth:`to_dict` (unknown keys are ignored).

        Raises:
            ValueError: not an object, a missing or mistyped field, or a newer format.
        """
        if not isinstance(data, dict):
            msg = "not a JSON object"
            raise ValueError(msg)
        version = data.get("format")
        if not isinstance(version, int) or isinstance(version, bool):
            msg = "no format number"
            raise ValueError(msg)
        if version > MANIFEST_FORMAT:
            msg = f"format {version} is newer than this version reads ({MANIFEST_FORMAT})"
            raise ValueError(msg)
        text = ("pipeline", "fingerprint", "model", "input", "input_resolved", "created_at")
        for name in text:
            if not isinstance(data.get(name), str):
                msg = f"{name!r} is missing or not a string"
                raise ValueError(msg)
        sessions, wall_s = data.get("sessions"), data.get("wall_s", 0.0)
        if not isinstance(sessions, int) or isinstance(sessions, bool) or sessions < 0:
            msg = "'sessions' is missing or not a count"
            raise ValueError(msg)
        if not isinstance(wall_s, int | float) or isinstance(wall_s, bool) or wall_s < 0:
            msg = "'wall_s' is not a number of seconds"
            raise ValueError(msg)
        options = data.get("options", {})
        if not isinstance(options, dict):
            msg = "'options' is not an object"
            raise ValueError(msg)
        return cls(
            **{name: data[name] for name in text},
            sessions=sessions,
            wall_s=float(wall_s),
            options=options,
            format=version,
        )


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


class _Foreign(Exception):
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


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
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


def _cut_record(raw: bytes) -> bool:
    """True when ``raw`` (a last line without newline) can be the start of a record line."""
    text = raw.rstrip(b"\r")
    if text.startswith(b"{"):
        text = b"{" + text[1:].lstrip()
    return text.startswith(_RECORD_START) or _RECORD_START.startswith(text)


def _lines(output: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw line) of ``output``, streaming."""
    with output.open("rb") as fh:
        yield from enumerate(fh, start=1)


@dataclass
class _Scan:
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
        return bool(self.drop) or self.unterminated


def _scan(output: Path) -> _Scan:
    """Read ``output`` once, streaming; keep the first done record of each id.

    Raises:
        _Foreign: a line is not a record (the message names it and why).
    """
    scan = _Scan()
    with output.open("rb") as fh:
        first = fh.read(1)
    if first and first != b"{":
        msg = "line 1 is not a record (it does not start with '{')"
        raise _Foreign(msg)
    for number, raw in _lines(output):
        complete = raw.endswith(b"\n")
        record, problem = _parse(raw)
        if record is None:
            if not complete and _cut_record(raw):
                scan.drop.add(number)
                scan.partial = 1
                continue
            msg = f"line {number} is not a record ({problem})"
            raise _Foreign(msg)
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
                scan.input_tokens += _count(usage.get("input_tokens"))
                scan.output_tokens += _count(usage.get("output_tokens"))
                scan.total_tokens += _count(usage.get("total_tokens"))
            scan.cost_usd += _usd(record.get("cost_usd"))
    return scan


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usd(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) through ``PATH.tmp``, ``fsync`` and ``os.replace``.

    A kill at any moment leaves the old file or the new one, whole.
    """
    staged = _staging_path(path)
    with staged.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, path)
    _fsync_dir(path.parent)


def _rewrite(output: Path, scan: _Scan) -> None:
    """Rewrite ``output`` without the lines ``scan`` drops, atomically, streaming."""
    staged = _staging_path(output)
    with staged.open("wb") as fh:
        for number, raw in _lines(output):
            if number in scan.drop:
                continue
            fh.write(raw if raw.endswith(b"\n") else raw + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, output)
    _fsync_dir(output.parent)


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
        return _scan(output).done
    except _Foreign as exc:
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
        scan = _scan(output)
    except _Foreign as exc:
        msg = f"{output}: {exc}; not a records file, left as it is"
        raise ConfigurationError(msg) from None
    if scan.rewrite:
        _rewrite(output, scan)
    return scan.done


class _Lock:
    """An exclusive ``flock`` on ``OUTPUT.lock``, holding our pid; gone when we die."""

    def __init__(self, path: Path, owner: Path) -> None:
        self.path = path
        self.fd: int | None = None
        import fcntl  # POSIX only; imported here so the module imports everywhere

        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec (PEP 446)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                msg = f"{owner} is in use by another run (pid {holder})"
                raise ConfigurationError(msg) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have unlinked the file as it released it:
            # a lock on an unlinked file guards nothing; take the file at ``path``.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)
        msg = f"{owner}: could not take {path}"  # pragma: no cover - a lock file churning
        raise ConfigurationError(msg)

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go (idempotent)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


class RunFile:
    """An output opened for a session by :func:`open_run`; a context manager.

    While open, the session holds ``OUTPUT.lock``. Leaving the ``with`` block
    (or :meth:`close`) closes :attr:`out` and releases the lock.

    Attributes:
        output: the records file.
        manifest: this session's manifest, as written (``sessions`` counts it).
        previous: the manifest found beside ``output``; None for a new run, a
            restart, or an adopted file (records without a manifest).
        adopted: True when ``output`` held records but no manifest (a file
            written before manifests existed); it was taken as this run's.
        backup: where a restart moved the old ``output`` (its sidecars beside
            it, ``BACKUP.manifest.json``, ``BACKUP.summary.json``); else None.
        done_ids: ids of the items done in earlier sessions: skip them.
        prior: the earlier sessions' totals and what the resume dropped.
        out: the records file, open for appending (text, UTF-8).
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
        lock: _Lock,
    ) -> None:
        self.output = output
        self.manifest = manifest
        self.previous = previous
        self.adopted = adopted
        self.backup = backup
        self.done_ids = done_ids
        self.prior = prior
        self._lock = lock
        self.out: TextIO = output.open("a", encoding="utf-8")

    @property
    def summary_path(self) -> Path:
        """Where :meth:`finish` writes the whole run's summary: ``OUTPUT.summary.json``."""
        return summary_path(self.output)

    def finish(self, session: RunSummary, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the whole run's summary and count this session's wall time in the manifest.

        Flushes :attr:`out`, totals every record in the file
        (:func:`whole_run_summary`), writes ``OUTPUT.summary.json`` atomically,
        then the manifest with ``wall_s`` grown by this session's.

        Args:
            session: this session's totals, from ``write_records``.
            extra: this session's further figures (``requests_sent``,
                ``cache_hits``), added to the session's part of the summary.

        Returns:
            The summary as written (see :func:`whole_run_summary`); under
            ``"session"`` it also has ``resumed_done`` and the ``dropped_*``
            counts of this session's resume.
        """
        self.out.flush()
        resume = {
            "resumed_done": self.prior.done,
            "dropped_failed": self.prior.dropped_failed,
            "dropped_duplicates": self.prior.dropped_duplicates,
            "dropped_partial": self.prior.dropped_partial,
        }
        summary = whole_run_summary(
            self.output,
            session,
            sessions=self.manifest.sessions,
            previous_wall_s=self.prior.wall_s,
            extra={**(extra or {}), **resume},
        )
        write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")
        self.manifest = replace(self.manifest, wall_s=self.prior.wall_s + session.wall_s)
        write_atomic(manifest_path(self.output), _manifest_text(self.manifest))
        return summary

    def close(self) -> None:
        """Close :attr:`out` and release the lock (idempotent)."""
        try:
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


def _manifest_text(manifest: RunManifest) -> str:
    return json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _read_manifest(output: Path) -> RunManifest | None:
    """The manifest beside ``output``, None when there is none.

    Raises:
        ValueError: it is not a manifest this version reads (the message says why).
    """
    path = manifest_path(output)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        msg = "not JSON"
        raise ValueError(msg) from None
    return RunManifest.from_dict(data)


def _other_run(found: RunManifest, ours: RunManifest) -> str | None:
    """Say how ``found`` is another run than ``ours``, or None when it is the same run."""
    if found.fingerprint != ours.fingerprint:
        return (
            f"chain {found.pipeline} {found.fingerprint[:12]} there, "
            f"{ours.pipeline} {ours.fingerprint[:12]} here"
        )
    if found.model != ours.model:
        return f"model {found.model!r} there, {ours.model!r} here"
    return None


def _backup_name(output: Path) -> Path:
    """A free ``OUTPUT.bak-YYYYmmdd-HHMMSS[-N]`` (its sidecar names free too)."""
    stem = f"{output.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        candidate = output.with_name(stem if n == 1 else f"{stem}-{n}")
        names = [candidate] + [candidate.with_name(candidate.name + s) for s in _SIDECARS]
        if not any(os.path.lexists(name) for name in names):
            return candidate
    msg = f"{output}: no free backup name like {stem}"  # pragma: no cover
    raise ConfigurationError(msg)


def _move_aside(output: Path) -> Path | None:
    """Rename ``output`` and its sidecars to a backup; return it (None: nothing to move).

    ``OUTPUT`` goes first: a kill between renames leaves at worst a stale
    sidecar beside no records, which the next session replaces.
    """
    sidecars = [output.with_name(output.name + s) for s in _SIDECARS]
    if not output.exists() and not any(s.exists() for s in sidecars):
        return None
    backup = _backup_name(output)
    if output.exists():
        os.rename(output, backup)
    for sidecar, suffix in zip(sidecars, _SIDECARS, strict=True):
        if sidecar.exists():
            os.rename(sidecar, backup.with_name(backup.name + suffix))
    _fsync_dir(output.parent)
    return backup


def open_run(output: Path, manifest: RunManifest, *, restart: bool) -> RunFile:
    """Open ``output`` for a session of the run ``manifest`` describes.

    In order: take ``OUTPUT.lock`` (non-blocking); check what is there; on
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
    - ``restart=True``: ``OUTPUT``, ``OUTPUT.manifest.json``,
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
            ``OUTPUT: is not a regular file``;
            ``OUTPUT: line N is not a record (why); not a records file, left as it is``;
            ``OUTPUT holds the records of another run (chain ... there, ... here);
            give another output, or restart to move them aside``;
            ``OUTPUT.manifest.json: not a run manifest (why); restart to move it aside``.
    """
    if output.exists() and not output.is_file():
        msg = f"{output}: is not a regular file"
        raise ConfigurationError(msg)
    # The real file: a symlink or another spelling of the path must find the same
    # lock and manifest, and a rewrite must replace the file, not the link.
    output = Path(os.path.realpath(output))
    lock = _Lock(lock_path(output), output)
    try:
        return _open_locked(output, manifest, restart=restart, lock=lock)
    except BaseException:
        lock.release()
        raise


def _open_locked(output: Path, manifest: RunManifest, *, restart: bool, lock: _Lock) -> RunFile:
    exists = output.is_file()
    scan = _Scan()
    if exists:
        try:
            scan = _scan(output)
        except _Foreign as exc:
            msg = f"{output}: {exc}; not a records file, left as it is"
            raise ConfigurationError(msg) from None
    try:
        previous = _read_manifest(output)
    except ValueError as exc:
        if not restart and exists:
            path = manifest_path(output)
            msg = f"{path}: not a run manifest ({exc}); restart to move it aside"
            raise ConfigurationError(msg) from None
        previous = None  # moved aside below, or stale beside no records: replaced
    if exists and previous is not None and not restart:
        other = _other_run(previous, manifest)
        if other is not None:
            msg = (
                f"{output} holds the records of another run ({other}); "
                "give another output, or restart to move them aside"
            )
            raise ConfigurationError(msg)
    # Checked: from here on we change things, each step whole under a kill.
    staged = [_staging_path(output), _staging_path(manifest_path(output))]
    staged.append(_staging_path(output.with_name(output.name + ".batches.json")))
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
            _rewrite(output, scan)
        adopted = previous is None
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
    else:
        previous = None  # a manifest beside no records describes nothing
        manifest = replace(manifest, sessions=1, wall_s=0.0)
    write_atomic(manifest_path(output), _manifest_text(manifest))
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


@dataclass
class RunTotals:
    """Totals over every record of a records file (all sessions), from :func:`run_totals`.

    Attributes:
        done: done records.
        failed: failed records.
        retries: retries, counted as ``RunSummary`` counts them.
        throttled: attempts that ended in a rate-limit error (429).
        input_tokens: input tokens of all records.
        output_tokens: output tokens of all records.
        total_tokens: total tokens of all records.
        cost_usd: cost of all records, USD.
        cache_saved_usd: what the LLM cache saved over all records, USD.
        batch_saved_usd: what the Batch API price saved over all records, USD.
        unpriced: records that made model calls but carry no cost (no price).
        attempt_errors: failed attempts by error class and HTTP status.
        failed_by_class: failed records by their error's class.
        unreadable: lines that are not records (a partial last line), skipped.
    """

    done: int = 0
    failed: int = 0
    retries: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cache_saved_usd: float = 0.0
    batch_saved_usd: float = 0.0
    unpriced: int = 0
    attempt_errors: dict[str, int] = field(default_factory=dict)
    failed_by_class: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record, as read from the file (a dict)."""
        error = record.get("error")
        if error is None:
            self.done += 1
        else:
            self.failed += 1
            kind = str(error.get("type", "?")) if isinstance(error, dict) else "?"
            self.failed_by_class[kind] = self.failed_by_class.get(kind, 0) + 1
        history = record.get("history")
        entries = history if isinstance(history, list) else []
        failed_attempts = len(entries) + _count(record.get("history_dropped"))
        self.retries += max(0, failed_attempts - (0 if error is None else 1))
        for entry in entries:
            if isinstance(entry, dict):
                status = entry.get("status")
                key = str(entry.get("error", "?")) + (f" {status}" if status else "")
                self.attempt_errors[key] = self.attempt_errors.get(key, 0) + 1
        self.throttled += _count(record.get("throttled"))
        usage = record.get("usage")
        if isinstance(usage, dict):
            self.input_tokens += _count(usage.get("input_tokens"))
            self.output_tokens += _count(usage.get("output_tokens"))
            self.total_tokens += _count(usage.get("total_tokens"))
        cost = record.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += cost
        elif _count(record.get("calls")):
            self.unpriced += 1
        self.cache_saved_usd += _usd(record.get("cache_saved_usd"))
        self.batch_saved_usd += _usd(record.get("batch_saved_usd"))

    def as_dict(self) -> dict[str, Any]:
        """Return the totals under the names ``RunSummary.as_dict`` uses."""
        return {
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cache_saved_usd": round(self.cache_saved_usd, 6),
            "batch_saved_usd": round(self.batch_saved_usd, 6),
            "unpriced": self.unpriced,
            "attempt_errors": dict(sorted(self.attempt_errors.items())),
            "failed_by_class": dict(sorted(self.failed_by_class.items())),
        }


def run_totals(output: Path) -> RunTotals:
    """Total every record in ``output``, one line at a time (memory does not grow with it).

    Args:
        output: the records file.

    Returns:
        The totals; all zero when ``output`` does not exist. Lines that are not
        records are skipped and counted in ``unreadable``.
    """
    totals = RunTotals()
    if not output.is_file():
        return totals
    for _, raw in _lines(output):
        record, _problem = _parse(raw)
        if record is None:
            totals.unreadable += 1
        else:
            totals.add(record)
    return totals


def whole_run_summary(
    output: Path,
    session: RunSummary,
    *,
    sessions: int,
    previous_wall_s: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary of the whole run: every record in ``output``, and this session.

    Top level, over all records in the file (all sessions): ``done``,
    ``failed``, ``retries``, ``throttled_429``, ``input_tokens``,
    ``output_tokens``, ``total_tokens``, ``cost_usd``, ``cache_saved_usd``,
    ``batch_saved_usd``, ``unpriced``, ``attempt_errors``, ``failed_by_class``;
    then ``sessions``, ``session_wall_s`` and ``total_wall_s``
    (``previous_wall_s`` + this session's). The figures only this session
    can give keep their place and meaning at top level: ``wall_s``, the rates
    and p50/p95 percentiles, and ``extra`` (``requests_sent``, ``cache_hits``).
    ``"session"`` holds this session's own ``RunSummary.as_dict()`` with
    ``extra``. On a first session the top level equals what
    ``RunSummary.as_dict()`` gave, plus the new keys.

    Args:
        output: the records file (flushed).
        session: this session's totals.
        sessions: sessions of the run, this one included.
        previous_wall_s: wall time of the earlier sessions, seconds.
        extra: this session's further figures.

    Returns:
        A JSON-able dict.
    """
    mine = {**session.as_dict(), **(extra or {})}
    whole = run_totals(output).as_dict()
    total_wall = previous_wall_s + session.wall_s
    return {
        **mine,
        **whole,
        "sessions": sessions,
        "session_wall_s": round(session.wall_s, 3),
        "total_wall_s": round(total_wall, 3),
        "session": mine,
    }
