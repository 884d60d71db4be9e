"""End every process of a local Ray this run started, however the run ends.

A local Ray started by ``ray.init`` runs as the driver's descendants (GCS,
raylet, workers, and the raylet's DashboardAgent and RuntimeEnvAgent). On a
normal end ``ray.shutdown`` stops most of them; after a ``kill -9`` of the
driver the two agents are left running, and they ignore SIGTERM
(https://github.com/ray-project/ray/issues/52385).

So a small watcher process (:func:`start_reaper`) runs beside the driver, in
its own session so that a signal to the driver's job does not end it first.
It polls the driver's descendants whose command line names Ray (psutil),
remembering each by pid and start time, and reads a pipe the driver holds.
When the pipe closes (the driver ended the run, or died: the kernel closes
its end either way) it kills with SIGKILL every remembered process still
running and their descendants, then exits. Processes the driver had before
the watcher started (an embedded ``llama-server``, an app's own children) and
those not naming Ray are never touched.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from typing import IO, Any

__all__ = ["Reaper", "start_reaper"]

_POLL_S = 0.25


class Reaper:
    """The watcher process; :meth:`stop` (or the driver's death) makes it reap and exit."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def stop(self, wait_s: float = 10.0) -> None:
        """Close the pipe: the watcher kills what is left of this Ray, then exits (bounded wait)."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(wait_s)


def start_reaper() -> Reaper | None:
    """Start the watcher for this process's Ray descendants; None without psutil or off Linux.

    Call it before ``ray.init`` and :meth:`Reaper.stop` after ``ray.shutdown``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import psutil
    except ImportError:
        return None
    before = ",".join(str(p.pid) for p in psutil.Process().children(recursive=True))
    process = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), before],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return Reaper(process)


def _descendants(psutil: Any, pid: int) -> list[Any]:
    with contextlib.suppress(psutil.Error):
        return list(psutil.Process(pid).children(recursive=True))
    return []


def _names_ray(psutil: Any, process: Any) -> bool:
    with contextlib.suppress(psutil.Error):
        return "ray" in " ".join(process.cmdline()).lower()
    return False


def _watch(driver: int, exclude: set[int], pipe: IO[bytes]) -> dict[int, float]:
    """Remember the driver's Ray descendants until ``pipe`` closes; return pid -> start time."""
    import psutil

    known: dict[int, float] = {}
    exclude = exclude | {os.getpid()}
    while True:
        for process in _descendants(psutil, driver):
            if process.pid not in exclude and process.pid not in known:
                with contextlib.suppress(psutil.Error):
                    if _names_ray(psutil, process):
                        known[process.pid] = process.create_time()
        readable, _, _ = select.select([pipe], [], [], _POLL_S)
        if readable and not os.read(pipe.fileno(), 4096):
            return known


def _reap(known: dict[int, float]) -> None:
    """SIGKILL every remembered process still running (same pid and start time) and its tree."""
    import psutil

    doomed: list[Any] = []
    for pid, started in known.items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.create_time() == started:
                doomed += [process, *process.children(recursive=True)]
    for process in doomed:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(doomed, timeout=5)


def main(argv: list[str]) -> None:
    """``python -m ...engines._ray_reaper DRIVER_PID [EXCLUDED_PIDS]``: watch, then reap."""
    driver = int(argv[0])
    exclude = {int(pid) for pid in argv[1].split(",") if pid} if len(argv) > 1 else set()
    _reap(_watch(driver, exclude, sys.stdin.buffer))


if __name__ == "__main__":
    main(sys.argv[1:])
