"""Start a local server process for a benchmark or test, wait until it answers, stop it after."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def running(
    cmd: list[str],
    *,
    ready: Callable[[], bool],
    name: str,
    log: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd``; yield the process once ``ready()`` is True; terminate it on exit.

    ``ready`` is polled every 0.05 s for 10 s (it returns False while the
    server does not answer yet). Output goes to ``log`` (default: discarded).
    On exit the process is terminated, and killed after 5 s.

    Raises:
        RuntimeError: the process exited, or was not ready within 10 s (``name`` says which).
    """
    sink = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            sink.close()  # type: ignore[union-attr]
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            if ready():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name} did not answer in 10 s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def answers(url: str) -> bool:
    """Return True when ``GET url`` gets any HTTP answer."""
    import httpx

    try:
        httpx.get(url, timeout=1, trust_env=False)
    except httpx.HTTPError:
        return False
    return True


@contextlib.contextmanager
def serving(module: str, name: str, options: tuple[str, ...], log: Path | None) -> Iterator[str]:
    """Run ``python -m module --port P *options`` on a free loopback port; yield its base URL.

    Ready once ``GET /stats`` answers (every mock here serves it). ``name``
    names it in errors; ``log`` takes its output (default: discarded). On
    exit it is terminated, and killed after 5 s (:func:`running`).

    Raises:
        RuntimeError: it exited, or did not answer ``/stats`` within 10 s.
    """
    port = free_port()
    cmd = [sys.executable, "-m", module, "--port", str(port), *options]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, ready=lambda: answers(base + "/stats"), name=name, log=log, cwd=ROOT):
        yield base
