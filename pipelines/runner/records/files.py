"""Files that survive a kill: atomic replacement, and the lock a run holds on its output.

Every rewrite is a temp file, ``fsync``, ``os.replace``: a ``kill -9`` at any
moment leaves the old file or the new one, whole. :class:`RunLock` is an
exclusive ``flock`` on ``OUTPUT.lock`` that the kernel drops when the process
dies. The Batch API's sidecar (``OUTPUT.batches.json``) is written the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.records.paths import staging_path

__all__ = ["RunLock", "fsync_dir", "lock_holder", "rewrite_without", "write_atomic"]


def fsync_dir(folder: Path) -> None:
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
    staged = staging_path(path)
    with staged.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, path)
    fsync_dir(path.parent)


def rewrite_without(output: Path, drop: Collection[int]) -> None:
    """Rewrite ``output`` without its lines numbered in ``drop`` (1-based), atomically, streaming.

    A kept last line without its newline gets one.
    """
    staged = staging_path(output)
    with staged.open("wb") as fh, output.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            if number in drop:
                continue
            fh.write(raw if raw.endswith(b"\n") else raw + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, output)
    fsync_dir(output.parent)


class RunLock:
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


def lock_holder(path: Path) -> str | None:
    """Return the pid (text) of the run holding the lock file ``path``, None when none does.

    Probes with a shared, non-blocking ``flock``, held for no longer than the
    probe; a lock file left by a killed run is not held.
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
