"""Start Debian's ``redis-server`` on a loopback port for tests and benchmarks; stop it after.

No persistence (``--save "" --appendonly no``), bound to 127.0.0.1 with
protected mode on, working files in a temporary folder removed afterwards.

Run in the foreground (``make redis``): ``python -m benchmarks.redis_server --port 6390``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from benchmarks._process import free_port, running

REDIS_SERVER = "/usr/bin/redis-server"
_MISSING = (
    "redis-server is not installed (looked for {path} and on PATH): "
    "apt-get install redis-server, or make redis"
)


def redis_server_path() -> str:
    """Return the ``redis-server`` binary: Debian's, else the first on PATH.

    Raises:
        RuntimeError: not installed, with the command that installs it.
    """
    if Path(REDIS_SERVER).is_file():
        return REDIS_SERVER
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(_MISSING.format(path=REDIS_SERVER))
    return found


def command(binary: str, port: int, folder: Path) -> list[str]:
    """Return the command line of ``binary`` (a redis-server) on ``port``, working in ``folder``."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


@contextlib.contextmanager
def spawn(*, port: int | None = None, log: Path | None = None) -> Iterator[str]:
    """Run ``redis-server`` on a loopback port; yield its URL, ``redis://127.0.0.1:PORT/0``.

    Args:
        port: the port (default: a free one); a test that restarts Redis passes
            the port of the one it stopped.
        log: where the server's output goes (default: discarded).

    On exit the server is terminated (SIGTERM: it stops at once, nothing to
    save), killed after 5 s, and its folder removed.

    Raises:
        RuntimeError: redis-server is not installed, exited, or did not answer
            ``PING`` within 10 s.
    """
    binary = redis_server_path()  # before any folder or process
    port = port or free_port()
    folder = Path(tempfile.mkdtemp(prefix="redis-"))
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    try:
        with running(
            command(binary, port, folder), ready=ready, name=f"redis-server (port {port})", log=log
        ):
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=6390, help="loopback port (default 6390)")
    args = parser.parse_args()

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)  # unwinds spawn(), which stops the server

    signal.signal(signal.SIGTERM, stop)
    try:
        with spawn(port=args.port) as url:
            print(f"redis at {url} (no persistence); Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
