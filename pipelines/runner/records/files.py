"""Files that survive a kill: atomic replacement, and the lock a run holds on its output.

Every rewrite is a temp file, ``fsync``, ``os.replace``: a ``kill -9`` at any
moment leaves the old file or the new one, whole. :class:`RunLock` is an
exclusive ``flock`` on ``OUTPUT.lock`` and on the records file itself, which
the kernel drops when the process dies. The Batch API's sidecar
(``OUTPUT.batches.json``) is written the same way.
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


def _flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when another holds it."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """Exclusive ``flock`` s on ``OUTPUT.lock`` (our pid in it) and on the records; gone at exit.

    ``OUTPUT.lock`` is found by path (a symlink is resolved by the caller).
    The records file is locked too, by :meth:`hold_records` and :meth:`cover`:
    a ``flock`` belongs to the file's identity (device and inode), not to a
    name, so a run writing the same file through a hard link (another name,
    another ``NAME.lock``) is refused as well (issue 22: two runs through a
    hard link wrote 560 lines, 260 of them duplicates, and both paid).
    """

    def __init__(self, path: Path, owner: Path) -> None:
        self.path = path
        self.owner = owner
        self.fd: int | None = None
        self._records_fd: int | None = None
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

    def hold_records(self, records: Path) -> None:
        """Lock the records file as it is now, if there is one, before anything changes it.

        Raises:
            ConfigurationError: another run holds it (under another name).
            OSError: it cannot be opened.
        """
        try:  # O_NONBLOCK: a FIFO put there must not hang the open
            fd = os.open(records, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        if not _flock(fd):
            os.close(fd)
            raise ConfigurationError(self._taken())
        self._records_fd = fd

    def cover(self, fd: int) -> None:
        """Lock the records file open at ``fd`` (the one written), unless already held.

        Raises:
            ConfigurationError: another run holds it (under another name).
        """
        held = self._records_fd
        if held is not None and os.path.samestat(os.fstat(held), os.fstat(fd)):
            return  # the same file: a second flock of ours would refuse ourselves
        if not _flock(fd):
            raise ConfigurationError(self._taken())

    def _taken(self) -> str:
        return (
            f"{self.owner} is in use by another run that writes the same file under "
            "another name (a hard link)"
        )

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go (idempotent)."""
        if self._records_fd is not None:
            os.close(self._records_fd)
            self._records_fd = None
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
