"""SIGTERM to a real ``serve()`` in a subprocess with a slow fake model: running work gets the
grace period, a stream or batch still running at its end gets an ``error`` event, an invoke a
503, both ``ServerShuttingDown``; then the process exits by itself."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.unit.service.conftest import sse

ROOT = Path(__file__).resolve().parents[3]

SERVER = """
import asyncio, logging, sys
from langchain_core.messages import AIMessage
from lc_async_pipelines.service import ServiceSettings, create_app, serve
from tests.unit.fakes import FnChatModel

logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
settings = ServiceSettings(shutdown_grace_s=3, max_in_flight=8)
apps = []

async def model(messages, **_):
    prompt = " ".join(str(m.content) for m in messages)
    if "finish" in prompt:  # runs past the start of the shutdown, ends within the grace
        await apps[0].state.pipelines.shutting_down.wait()
        await asyncio.sleep(0.2)
        return AIMessage(content="Finished in time. The end.")
    await asyncio.sleep(3600)  # "hang": still running when the grace is over
    return AIMessage(content="never")

apps.append(create_app(FnChatModel(fn=model), settings=settings))
serve(apps[0], host="127.0.0.1", port=int(sys.argv[1]), settings=settings)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_thread(results: dict, key: str, fn) -> threading.Thread:
    def run() -> None:
        try:
            results[key] = fn()
        except Exception as exc:  # reported by the assertions
            results[key] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigterm_gives_running_work_its_grace_then_tells_the_clients():
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    results: dict = {}
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = httpx.Client(base_url=base, timeout=60)

        def post(path: str, body: dict) -> httpx.Response:
            return client.post(path, json=body)

        threads = [
            _in_thread(
                results, "stream", lambda: post("/v1/pipelines/story/stream", {"input": "hang"})
            ),
            _in_thread(
                results, "finish", lambda: post("/v1/pipelines/story/invoke", {"input": "finish"})
            ),
            _in_thread(
                results, "hang", lambda: post("/v1/pipelines/story/invoke", {"input": "hang"})
            ),
            _in_thread(
                results,
                "batch",
                lambda: post("/v1/pipelines/summary/batch", {"inputs": ["hang", "finish"]}),
            ),
        ]
        in_flight = 0
        for _ in range(600):  # until all five inputs run
            in_flight = httpx.get(base + "/healthz", timeout=5).json()["in_flight"]
            if in_flight == 5:
                break
            time.sleep(0.05)
        assert in_flight == 5
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        code = proc.wait(timeout=60)
        log = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # uvicorn re-raises the SIGTERM it handled once it has shut down: killed by it, cleanly.
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert "shutting down: 5 inputs in flight get 3 s to finish" in log
    assert "timeout graceful shutdown exceeded" not in log  # nothing left for uvicorn to cancel

    finished = results["finish"]
    assert finished.status_code == 200, finished.text
    assert finished.json()["output"] == "Finished in time. The end."

    cut = results["hang"]
    assert cut.status_code == 503, cut.text
    assert cut.json()["detail"]["error"]["type"] == "ServerShuttingDown"

    events = sse(results["stream"].text)
    assert events[-1][0] == "error", events
    assert events[-1][1]["type"] == "ServerShuttingDown" and events[-1][1]["request_id"]

    batch = sse(results["batch"].text)
    done = [d for k, d in batch if k == "result"]
    assert [(d["index"], d["output"]) for d in done] == [(1, "Finished in time. The end.")]
    assert batch[-1][0] == "error" and batch[-1][1]["type"] == "ServerShuttingDown"
    assert json.dumps(batch)  # every event was JSON
