"""Article extraction in worker processes that can be stopped, with a time, CPU and memory limit.

trafilatura takes time quadratic in some hostile pages (600,000 unclosed
``<p>`` tags, one tag with 200,000 attributes: 22 s for 0.8 MB, minutes and
800 MB for 4.8 MB). A thread running it can be neither stopped nor bounded,
and held the process after its deadline and its first signal. Here every
extraction runs in a worker process:

- past ``timeout_s`` of wall-clock time the worker is killed (SIGKILL) and
  the page becomes its article's ``FetchError``; a cancelled call (an
  item's timeout, the run's deadline, a signal) kills its worker the same way;
- in the worker, ``RLIMIT_CPU`` ends a page past ``timeout_s`` seconds of CPU
  even when this process is gone, and ``RLIMIT_AS`` bounds its memory
  (https://docs.python.org/3/library/resource.html#resource.setrlimit).

A worker is ``python -P -m`` this module, talking over its stdin and stdout
(a length, then JSON and the page's bytes): not multiprocessing, whose
spawn and forkserver import the caller's ``__main__`` in every worker (a
script without an ``if __name__ == "__main__":`` guard would run again), and
whose fork is unsafe in this threaded process. Starting one costs about a
second of CPU (importing trafilatura), before its first page's clock starts;
a killed one is replaced on the next call. An idle worker ends by itself
when its stdin closes (:meth:`Extractor.aclose`, or this process ending);
on Linux every worker is also killed when this process ends however it ends
(``PR_SET_PDEATHSIG``, https://man7.org/linux/man-pages/man2/prctl.2.html),
kill -9 included.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import math
import os
import resource
import signal
import struct
import sys
from types import TracebackType
from typing import Any, BinaryIO, Literal

from lc_async_pipelines.errors import ConfigurationError, FetchError
from lc_async_pipelines.news._extract import PageText, extract_page, page_metadata
from lc_async_pipelines.news._fetch import FetchLimits, shown_url

__all__ = ["Extractor"]

Kind = Literal["page", "metadata"]
_REQUEST = struct.Struct(">II")  # lengths of the JSON part and of the page
_REPLY = struct.Struct(">I")  # length of the JSON reply
_READY = b"+"
_MB = 1_000_000
_START_S = 60.0  # importing trafilatura on a loaded machine
_MEMORY_PER_PAGE_BYTE = 100
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _address_space() -> int | None:
    """This process's virtual memory in bytes (Linux's /proc), None where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _near_the_memory_limit() -> bool:
    """Whether this process's peak address space came within 64 MB of its limit.

    lxml reports a failed allocation as its own error (an ``XPathEvalError``),
    not a MemoryError.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            peak = next(line for line in status if line.startswith("VmPeak:"))
        return soft != resource.RLIM_INFINITY and int(peak.split()[1]) * 1024 > soft - 64 * _MB
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def _die_with(parent: int) -> None:
    """Be killed when the parent process ends, however it ends (Linux's PR_SET_PDEATHSIG).

    Elsewhere a busy worker outlives a killed parent by its CPU limit at most,
    an idle one ends when its stdin closes.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the call above
        os._exit(0)


def _limit(which: int, soft: int) -> None:
    """Set a soft limit, under the hard one (which only root may raise)."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _run(kind: str, page: bytes | str, url: str) -> dict[str, Any]:
    """One extraction, its outcome as a JSON-able reply."""
    try:
        if kind == "page":
            return {"status": "ok", "value": dataclasses.asdict(extract_page(page, url))}
        return {"status": "ok", "value": page_metadata(page, url)}
    except FetchError as exc:
        return {"status": "error", "cause": exc.cause}
    except MemoryError:
        return {"status": "memory"}
    except Exception as exc:  # a parser's bug on one page must not end the run
        if _near_the_memory_limit():
            return {"status": "memory"}
        return {"status": "failed", "cause": type(exc).__name__}


def _read(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def serve(memory_bytes: int, parent: int) -> None:
    """The worker: read a request from stdin, write the reply to stdout, until stdin closes."""
    _die_with(parent)
    # Ctrl-C reaches the whole process group; the parent decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit(resource.RLIMIT_CORE, 0)  # SIGXCPU would otherwise dump core in the user's folder
    start = _address_space()
    if start is not None:
        _limit(resource.RLIMIT_AS, start + memory_bytes)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe carries replies only
    replies.write(_READY)
    replies.flush()
    while (head := _read(requests, _REQUEST.size)) is not None:
        meta_size, page_size = _REQUEST.unpack(head)
        meta, page = _read(requests, meta_size), _read(requests, page_size)
        if meta is None or page is None:
            return
        asked = json.loads(meta)
        used = resource.getrusage(resource.RUSAGE_SELF)
        _limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime + asked["cpu_s"]))
        html = page.decode("utf-8", "surrogatepass") if asked["text"] else page
        reply = _run(asked["kind"], html, asked["url"])
        data = json.dumps(reply).encode("utf-8")
        replies.write(_REPLY.pack(len(data)) + data)
        replies.flush()
        if reply["status"] == "memory":
            return  # a fresh worker rather than one with a heap this large


class _Worker:
    """One worker process, as the parent sees it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, asked: dict[str, Any], page: bytes) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None  # both are pipes
        meta = json.dumps(asked).encode("utf-8")
        stdin.write(_REQUEST.pack(len(meta), len(page)) + meta)
        stdin.write(page)
        await stdin.drain()
        (size,) = _REPLY.unpack(await stdout.readexactly(_REPLY.size))
        reply: dict[str, Any] = json.loads(await stdout.readexactly(size))
        return reply

    async def kill(self) -> int | None:
        """End the worker (SIGKILL unless it has ended); its exit code (-9 when killed)."""
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        return await self.process.wait()


class Extractor:
    """Run :func:`extract_page` and :func:`page_metadata` in worker processes, each page bounded.

    Use it as an async context manager, or call :meth:`aclose` when done:
    that ends every worker. One instance may be shared by any number of
    tasks on one event loop; at most ``workers`` pages are read at once, the
    others wait their turn (a page's limits count from when its turn comes).

    Args:
        timeout_s: the most seconds one page may take, wall clock and CPU
            (the command line's ``--fetch-timeout``).
        memory_bytes: the most memory a worker may take beyond what it has
            at start (``RLIMIT_AS``, address space; enforced on Linux),
            500 MB by default: a 4.6 MB page of real articles took 190 MB.
        workers: processes at most, default the number of CPUs up to 4.

    Raises:
        ConfigurationError: a value out of range (the message names it).
    """

    def __init__(
        self, *, timeout_s: float = 15.0, memory_bytes: int = 500 * _MB, workers: int | None = None
    ) -> None:
        if isinstance(timeout_s, bool) or not (
            isinstance(timeout_s, int | float) and 0 < timeout_s < math.inf
        ):
            raise ConfigurationError(f"Extractor timeout_s must be seconds > 0, got {timeout_s!r}")
        if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes < 1:
            msg = f"Extractor memory_bytes must be an integer >= 1, got {memory_bytes!r}"
            raise ConfigurationError(msg)
        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(f"Extractor workers must be an integer >= 1, got {workers!r}")
        self.timeout_s = float(timeout_s)
        self.memory_bytes = memory_bytes
        self._turns = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False

    @classmethod
    def for_pages(cls, limits: FetchLimits) -> Extractor:
        """An extractor for the pages a fetcher with ``limits`` reads.

        ``timeout_s`` is ``limits.read_timeout_s``; ``memory_bytes`` is 100
        bytes per byte of ``limits.max_bytes``, at least the default 500 MB.
        """
        memory = max(500 * _MB, _MEMORY_PER_PAGE_BYTE * limits.max_bytes)
        return cls(timeout_s=limits.read_timeout_s, memory_bytes=memory)

    async def __aenter__(self) -> Extractor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End every worker, idle or busy (a busy one's caller gets a ``FetchError``)."""
        self._closed = True
        workers = list(self._all)
        self._all.clear()
        self._idle.clear()
        for worker in workers:
            await worker.kill()

    async def page(self, html: bytes | str, url: str) -> PageText:
        """Extract an article, as :func:`~lc_async_pipelines.news.extract_page` does, bounded.

        Raises:
            FetchError: extract_page's, and ``"too slow to read: stopped after
                15 s"``, ``"too large to read: over 500 MB of memory"``,
                ``"cannot be read (ValueError)"`` (a parser's bug).
        """
        return PageText(**await self._call("page", html, url))

    async def metadata(self, html: bytes | str, url: str) -> dict[str, str | None]:
        """Read a page's metadata, as :func:`~lc_async_pipelines.news.page_metadata` does, bounded.

        Raises:
            FetchError: as :meth:`page`.
        """
        meta: dict[str, str | None] = await self._call("metadata", html, url)
        return meta

    async def _call(self, kind: Kind, html: bytes | str, url: str) -> Any:
        shown = shown_url(url)
        text = isinstance(html, str)
        page = html.encode("utf-8", "surrogatepass") if isinstance(html, str) else html
        asked = {"kind": kind, "url": url, "text": text, "cpu_s": self.timeout_s}
        async with self._turns:
            worker = self._idle.pop() if self._idle else await self._start(shown)
            reply: dict[str, Any] | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    reply = await worker.ask(asked, page)
                return self._outcome(shown, reply)
            except TimeoutError:
                cause = f"too slow to read: stopped after {self.timeout_s:g} s"
                raise FetchError(shown, cause) from None
            except (asyncio.IncompleteReadError, ConnectionError):
                raise self._ended(shown, await worker.kill()) from None
            finally:
                if reply is not None and reply["status"] in ("ok", "error") and not self._closed:
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
                    await worker.kill()

    def _outcome(self, shown: str, reply: dict[str, Any]) -> Any:
        status = reply["status"]
        if status == "ok":
            return reply["value"]
        if status == "error":
            raise FetchError(shown, reply["cause"])
        if status == "memory":
            cause = f"too large to read: over {self.memory_bytes / _MB:g} MB of memory"
            raise FetchError(shown, cause)
        raise FetchError(shown, f"cannot be read ({reply['cause']})")

    def _ended(self, shown: str, code: int | None) -> FetchError:
        """The FetchError of a worker that ended mid-page (its exit code says why)."""
        if code == -signal.SIGXCPU:
            return FetchError(shown, f"too slow to read: over {self.timeout_s:g} s of CPU")
        if self._closed:
            return FetchError(shown, "not read: the run is ending")
        return FetchError(shown, f"cannot be read (its worker ended with code {code})")

    async def _start(self, shown: str) -> _Worker:
        if self._closed:
            raise FetchError(shown, "not read: the run is ending")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # the current folder not on sys.path: a trafilatura.py there is not imported
                "-m",
                __name__,
                str(self.memory_bytes),
                str(os.getpid()),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:  # no Python to run (an embedded interpreter), or no processes left
            raise FetchError(shown, f"cannot be read (no worker: {exc.strerror})") from None
        worker = _Worker(process)
        self._all.add(worker)
        ready = b""
        try:
            assert process.stdout is not None  # a pipe
            async with asyncio.timeout(_START_S):
                ready = await process.stdout.readexactly(len(_READY))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if ready != _READY or self._closed:
                self._all.discard(worker)
                await worker.kill()
        if self._closed:
            raise FetchError(shown, "not read: the run is ending")
        if ready != _READY:
            raise FetchError(shown, "cannot be read (its worker did not start)")
        return worker


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
