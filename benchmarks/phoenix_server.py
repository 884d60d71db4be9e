"""Arize Phoenix, a real OTLP receiver for LLM traces, for tests: installed once, started per run.

Phoenix (``arize-phoenix`` on PyPI, ``phoenix serve``) receives OTLP over
HTTP (``/v1/traces``, protobuf or JSON) and gRPC, stores spans in SQLite and
reads them back through its REST API (``/v1/projects/{project}/spans/otlpv1``).
It resolves to about 150 packages (860 MB), so it gets its own virtualenv,
cached per machine beside llama-server (``~/.cache/lc-async-pipelines``, or
``$PIPELINES_CACHE_DIR``) and keyed by its version; the project's own venv
never sees it. A file lock makes concurrent installs wait for one (``make
test`` starts the install in the background, the collector test waits for it).

Each :func:`spawn` runs a fresh server: loopback only, free ports, its
database and files in a temporary folder removed afterwards, offline (no
usage telemetry, no web fonts or sandbox downloads, no assistant, no MCP
server), and none of the caller's ``PHOENIX_*`` or ``OTEL_*`` variables.

Install (``make collector``): ``python -m benchmarks.phoenix_server install``
Run in the foreground: ``python -m benchmarks.phoenix_server serve --port 6006``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks._process import free_port

PHOENIX_VERSION = "20.26.1"
PHOENIX_PACKAGE = f"arize-phoenix=={PHOENIX_VERSION}"
# a start migrates a new database: 11-21 s on 2 busy cores (the first after an
# install also compiles the modules); two minutes leave room for a loaded CI
START_TIMEOUT_S = 120.0


def cache_folder() -> Path:
    """Return the folder of this Phoenix version's install (it may not exist yet).

    ``$PIPELINES_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, then
    ``lc-async-pipelines``: the cache where ``pipelines install-model`` keeps
    llama-server.
    """
    env = os.environ.get("PIPELINES_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "lc-async-pipelines"
    return root / "phoenix" / f"arize-phoenix-{PHOENIX_VERSION}"


def install_log() -> Path:
    """Return the file that holds the output of the last install."""
    return cache_folder() / "install.log"


def _stamp() -> Path:
    return cache_folder() / ".installed"


def _binary() -> Path:
    return cache_folder() / "venv" / "bin" / "phoenix"


def find_phoenix() -> Path | None:
    """Return the ``phoenix`` command of a finished install, else None."""
    return _binary() if _stamp().is_file() and _binary().is_file() else None


def install() -> Path:
    """Install Phoenix into its own cached virtualenv unless it is there; return ``phoenix``.

    Waits on a lock while another process installs, and returns at once if
    that install finished. A half-done install (killed, or failed) has no
    stamp file and is removed and done again. pip's output goes to
    :func:`install_log`.

    Raises:
        RuntimeError: the virtualenv or ``pip install`` failed (the message
            names the log).
    """
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_phoenix()
        if found is not None:
            return found
        venv = folder / "venv"
        shutil.rmtree(venv, ignore_errors=True)
        with open(install_log(), "w") as log:
            for step in (
                [sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", PHOENIX_PACKAGE],
            ):  # fmt: skip
                if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode:
                    raise RuntimeError(f"installing {PHOENIX_PACKAGE} failed; see {install_log()}")
        _stamp().touch()
    return _binary()


@dataclass(frozen=True)
class Phoenix:
    """A running Phoenix server.

    Attributes:
        url: its base URL, ``http://127.0.0.1:PORT``: the REST API is under
            ``/v1``, the UI at ``/``.
        otlp_endpoint: the value for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over
            HTTP; the exporter adds ``/v1/traces``); the same as ``url``.
        traces_url: the OTLP/HTTP traces URL, ``{url}/v1/traces``.
        grpc_endpoint: OTLP over gRPC, ``http://127.0.0.1:GRPC_PORT``.
        working_dir: the temporary folder with its database.
        log: the file that holds its output.
    """

    url: str
    otlp_endpoint: str
    traces_url: str
    grpc_endpoint: str
    working_dir: Path
    log: Path


def server_environment(port: int, grpc_port: int, working_dir: Path) -> dict[str, str]:
    """Return the environment of a server on ``port`` and ``grpc_port``, data in ``working_dir``.

    The caller's environment less its ``PHOENIX_*`` and ``OTEL_*`` variables
    (a user's database URL or exporter must not reach the test server).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(working_dir),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_ENABLE_MCP_SERVER="false",
    )
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after 10 s: nothing is left behind."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def spawn(*, port: int | None = None, timeout_s: float = START_TIMEOUT_S) -> Iterator[Phoenix]:
    """Run ``phoenix serve`` on loopback; yield it once ``/healthz`` answers; stop it after.

    Installs Phoenix first if needed (:func:`install`; minutes). The server
    runs in its own process group, which is terminated on exit (killed after
    10 s), also when the body raises; its temporary folder is then removed.

    Args:
        port: the HTTP port (default: a free one); gRPC takes another free one.
        timeout_s: how long to wait for ``/healthz``.

    Raises:
        RuntimeError: the install failed, or the server exited or did not
            answer in time (the message ends with its log's last lines).
    """
    binary = install()
    port = port or free_port()
    grpc_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="phoenix-"))
    url = f"http://127.0.0.1:{port}"
    phoenix = Phoenix(
        url=url,
        otlp_endpoint=url,
        traces_url=f"{url}/v1/traces",
        grpc_endpoint=f"http://127.0.0.1:{grpc_port}",
        working_dir=folder / "data",
        log=folder / "phoenix.log",
    )
    phoenix.working_dir.mkdir()
    try:
        command = [str(binary), "serve"]
        if shutil.which("setpriv"):  # util-linux: the server dies with its parent, even killed
            command = ["setpriv", "--pdeathsig", "TERM", *command]
        with open(phoenix.log, "wb") as log:
            proc = subprocess.Popen(
                command,
                env=server_environment(port, grpc_port, phoenix.working_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: _stop reaches any child it starts
            )
        try:
            _wait_ready(proc, phoenix, timeout_s)
            yield phoenix
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], phoenix: Phoenix, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _healthy(phoenix.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {proc.returncode}" if proc.poll() is not None else "is not up"
            tail = phoenix.log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(
                f"phoenix serve {state} after {timeout_s:.0f} s at most; last lines of its log:\n"
                + "\n".join(tail)
            )
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help=f"install {PHOENIX_PACKAGE} into {cache_folder()}")
    serve = sub.add_parser("serve", help="run a throwaway server in the foreground")
    serve.add_argument("--port", type=int, default=6006, help="HTTP port (default 6006)")
    args = parser.parse_args()
    try:
        if args.command == "install":
            started = time.monotonic()
            path = install()
            print(f"phoenix: {path} ({time.monotonic() - started:.0f} s)", flush=True)
            return
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # unwinds spawn()
        with spawn(port=args.port) as phoenix:
            print(
                f"phoenix at {phoenix.url}: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="
                f"{phoenix.traces_url} (it takes no metrics); data is removed on exit; "
                "Ctrl-C stops it",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
