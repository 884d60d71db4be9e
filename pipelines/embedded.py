"""The embedded model: SmolLM2-135M-Instruct served by llama.cpp's ``llama-server`` on loopback.

The server speaks the OpenAI chat-completions API, so pipelines talk to it over
HTTP exactly as they would to a hosted endpoint. ``llama-server`` with parallel
slots does continuous batching (measured here: 105 tokens/s alone, 160 tokens/s
with 6 concurrent requests), which is why it is preferred over
``llama-cpp-python``'s server (48 tokens/s, one request at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from lc_async_pipelines._llama_build import (
    INSTALL_COMMAND,
    build_llama_server,
    find_llama_server,
    find_model_path,
)
from lc_async_pipelines.errors import EmbeddedModelError

__all__ = [
    "EMBEDDED_MODEL_NAME",
    "EMBEDDED_SAMPLING",
    "EmbeddedModelError",
    "EmbeddedModelServer",
]

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"

# At temperature 0 with plain prompts, 45 of 52 long-story summaries looped on
# one sentence. Repeat and DRY penalties (llama.cpp sampling options, see
# tools/server/README.md) break those loops. Both look back over the prompt as
# well as the reply, so over a long window they also keep the model from
# copying the document's words: on 100 news articles a penalty of 1.15 over 128
# tokens held summaries at 84-87% of lead-N on ROUGE-L, 1.05 over the last 64
# tokens reached 91-92% with 0 loops (issue 23, docs/benchmarks.md). A repeat
# that slips through is left out of a summary (lc_async_pipelines._repeats).
EMBEDDED_SAMPLING: dict[str, Any] = {
    "repeat_penalty": 1.05,
    "repeat_last_n": 64,
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_penalty_last_n": 64,
}


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that ties the child to this process's life (Linux only).

    ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (man 2 prctl) has the kernel send
    SIGTERM to the server when the thread that started it exits, so a parent
    killed with SIGKILL does not leave a server behind. The libc function is
    looked up here, before the fork, so the child only makes one plain call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedModelServer:
    """Start, health-check and stop a ``llama-server`` process on a free loopback port.

    Use as a context manager (sync or async); ``base_url`` is then the
    OpenAI-compatible root, e.g. ``http://127.0.0.1:40123/v1``.

    Args:
        parallel: server slots, i.e. requests decoded together (continuous batching).
        ctx_per_slot: context window of each slot, in tokens (SmolLM2 was trained on 8192).
        port: loopback port; a free one is picked when None.
        threads: CPU threads for decoding (default: llama.cpp's choice).
        build: build ``llama-server`` into the cache if it is missing (about 5
            minutes, announced by a warning on the ``lc_async_pipelines.embedded``
            logger; ``pipelines install-model`` does it ahead of time).
        startup_timeout: seconds to wait for ``/health`` to answer 200.
        log_path: file for the server's output (default: discarded).

    Raises:
        EmbeddedModelError: on start when the binary or model is missing, the
            process exits early, or it is not healthy within ``startup_timeout``.
    """

    def __init__(
        self,
        *,
        parallel: int = 4,
        ctx_per_slot: int = 4096,
        port: int | None = None,
        threads: int | None = None,
        build: bool = True,
        startup_timeout: float = 60.0,
        log_path: Path | None = None,
    ) -> None:
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.port = port
        self.threads = threads
        self.build = build
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL of the running server (``.../v1``)."""
        if self.port is None:
            raise EmbeddedModelError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """Return the ``llama-server`` command line this server runs.

        Raises:
            EmbeddedModelError: the GGUF file is missing, or ``llama-server`` is
                missing and ``build`` is False or its build fails.
        """
        model = find_model_path()  # before a build: its error is instant, a build is not
        binary = find_llama_server()
        if binary is None:
            if not self.build:
                raise EmbeddedModelError(f"llama-server is not built: run `{INSTALL_COMMAND}`")
            binary = build_llama_server()  # logs a warning: it takes minutes
        if self.port is None:
            self.port = _free_port()
        cmd = [
            str(binary),
            "--model", str(model),
            "--alias", EMBEDDED_MODEL_NAME,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--parallel", str(self.parallel),
            "--ctx-size", str(self.ctx_per_slot * self.parallel),
        ]  # fmt: skip
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        return cmd

    def start(self) -> EmbeddedModelServer:
        """Start the process and block until ``/health`` answers 200.

        The server lives no longer than the thread that calls this (see
        :meth:`_spawn`): call it from a thread that outlives the server's use.
        """
        if self._proc is not None:
            return self
        self._spawn(self.command())
        import httpx  # only once a server starts: not in the start-up of every run

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self._health_url(), timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise EmbeddedModelError(f"llama-server not healthy after {self.startup_timeout} s")

    async def astart(self) -> EmbeddedModelServer:
        """Async :meth:`start`: spawn on the event loop's thread, wait without blocking it.

        A build of ``llama-server`` (when missing) runs in a worker thread; the
        process itself is spawned on the loop's thread, which lives as long as
        the loop, so the server is tied to it rather than to a worker thread.
        """
        if self._proc is not None:
            return self
        self._spawn(await asyncio.to_thread(self.command))
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self._health_url())).status_code == 200:
                        return self
                await asyncio.sleep(0.2)
        self.stop()
        raise EmbeddedModelError(f"llama-server not healthy after {self.startup_timeout} s")

    def _spawn(self, cmd: list[str]) -> None:
        """Start ``cmd``; on Linux the kernel stops it when the starting thread dies.

        Raises:
            EmbeddedModelError: the process exits at once.
        """
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor

    def _health_url(self) -> str:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._proc = None
            raise EmbeddedModelError(f"llama-server exited with code {code} on start")
        return self.base_url.removesuffix("/v1") + "/health"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedModelServer:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
