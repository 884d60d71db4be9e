"""The watcher that ends a local Ray's processes: with stand-in processes, not Ray."""

import subprocess
import sys

import pytest

from lc_async_pipelines.engines._ray_reaper import start_reaper

pytest.importorskip("psutil")
SLEEP = "import time; time.sleep(120)"


def sleeper(*tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLEEP, *tag])


def test_the_reaper_kills_the_ray_processes_started_after_it_and_nothing_else():
    before = sleeper("ray-like-but-older")  # e.g. the embedded llama-server: not Ray's
    reaper = start_reaper()
    assert reaper is not None
    ray_like = [sleeper("ray::DashboardAgent"), sleeper("ray::RuntimeEnvAgent")]
    other = sleeper("not-that-one")
    try:
        reaper.stop()  # the watcher looks once more before it reads the closed pipe
        assert [p.wait(10) for p in ray_like] == [-9, -9]
        assert before.poll() is None and other.poll() is None
    finally:
        for process in (before, other, *ray_like):
            process.kill()
            process.wait()
