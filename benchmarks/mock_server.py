"""A local OpenAI-compatible mock for benchmarks and fault tests (loopback only).

``POST /v1/chat/completions``, plain and streamed (SSE, with usage in the last
chunk), answers ``"echo: <last user message>"`` cut to ``max_tokens`` words, so a
test can check that every output belongs to its own input. It can:

- wait ``latency_s`` before answering, and ``token_delay_s`` between streamed words;
- enforce requests and tokens per minute, answering 429 with ``Retry-After``
  and ``retry-after-ms`` when over;
- inject faults at ``fault_rate``: 429, 500, 503, a connection dropped
  mid-response, a truncated JSON body, and a response that hangs (``hang_s``);
- with ``echo_headers``, play a leaky endpoint: every error body (429, 500,
  503) carries the request's headers, ``Authorization`` included, both as an
  object and inside its message text.

Counters (requests, 429s, faults by kind) are at ``GET /stats``, with
``completed`` (answers served whole, status 200), ``completions_by_prompt``
(the same per prompt, the last user message) and ``served_again`` (the
wall-clock times at which each prompt served more than once was served):
a prompt served twice is a finished call paid twice.

Run: ``python benchmarks/mock_server.py --port 8123 --rpm 3000 --fault-rate 0.2``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAULTS = ("429", "500", "503", "reset", "truncated", "hang")


@dataclass
class MockConfig:
    """Behaviour of the mock: latency (s), limits (per minute), fault mix."""

    latency_s: float = 0.0
    rpm: float | None = None
    tpm: float | None = None
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    hang_s: float = 3600.0
    retry_after_s: float = 0.05
    token_delay_s: float = 0.0
    seed: int = 0
    echo_headers: bool = False


@dataclass
class _Window:
    """Requests and tokens admitted in the current one-minute-scaled window."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    tokens: int = 0


def _words(messages: list[dict[str, Any]]) -> str:
    user = [m for m in messages if m.get("role") in ("user", "human")]
    content = user[-1]["content"] if user else ""
    if isinstance(content, list):
        content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def create_app(config: MockConfig) -> Starlette:
    """Return the Starlette app of the mock for ``config``."""
    rng = random.Random(config.seed)
    stats: Counter[str] = Counter()
    # Limits are checked over a rolling 1 s window scaled from per-minute figures,
    # so a benchmark of a few seconds already meets them.
    window = _Window()
    first_request: list[float] = []
    throttled_at: list[float] = []  # seconds after the first request, the first 20
    served: dict[str, list[float]] = {}  # prompt -> wall-clock times of whole 200 answers

    def completed(prompt: str) -> None:
        stats["completed"] += 1
        served.setdefault(prompt, []).append(time.time())

    def error_body(request: Request, message: str, kind: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": message, "type": kind}
        if config.echo_headers:  # a leaky endpoint: the caller's headers, key included
            headers = dict(request.headers)
            error["message"] = f"{message}; request headers: {json.dumps(headers)}"
            error["headers"] = headers
            return {"error": error, "request": {"headers": headers}}
        return {"error": error}

    def over_limit(tokens: int) -> float | None:
        now = time.monotonic()
        if now - window.started >= 1.0:
            window.started, window.requests, window.tokens = now, 0, 0
        rps = config.rpm / 60 if config.rpm else None
        tps = config.tpm / 60 if config.tpm else None
        if (rps and window.requests + 1 > rps) or (tps and window.tokens + tokens > tps):
            return max(0.0, 1.0 - (now - window.started))
        window.requests += 1
        window.tokens += tokens
        stats["tokens_admitted"] += tokens
        return None

    async def completions(request: Request) -> Response:
        body = await request.json()
        stats["requests"] += 1
        first_request[:] = first_request or [time.monotonic()]
        text = _words(body.get("messages", []))
        max_tokens = int(body.get("max_tokens") or 64)
        reply_words = ("echo: " + text).split()[:max_tokens]
        prompt_tokens = max(1, len(text) // 4)
        wait = over_limit(prompt_tokens + len(reply_words))
        if wait is not None:
            stats["429_rate_limit"] += 1
            if len(throttled_at) < 20:
                throttled_at.append(round(time.monotonic() - first_request[0], 3))
            retry_ms = max(wait, config.retry_after_s) * 1000
            headers = {"retry-after": f"{retry_ms / 1000:.3f}", "retry-after-ms": f"{retry_ms:.0f}"}
            error = error_body(request, "rate limit", "rate_limit_exceeded")
            return JSONResponse(error, status_code=429, headers=headers)
        fault = rng.choice(config.faults) if rng.random() < config.fault_rate else None
        if fault:
            stats[f"fault_{fault}"] += 1
        if config.latency_s:
            await asyncio.sleep(config.latency_s)
        if fault in ("429", "500", "503"):
            headers = {"retry-after-ms": f"{config.retry_after_s * 1000:.0f}"}
            error = error_body(request, f"injected {fault}", "server_error")
            return JSONResponse(error, status_code=int(fault), headers=headers)
        if fault == "hang":
            await asyncio.sleep(config.hang_s)
            if await request.is_disconnected():  # the client gave up: nothing is served
                stats["hang_abandoned"] += 1
                return Response(status_code=499)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reply_words),
            "total_tokens": prompt_tokens + len(reply_words),
        }
        base = {"id": f"mock-{stats['requests']}", "created": int(time.time()), "model": "mock"}
        if fault == "truncated":
            return Response('{"id": "mock", "choices": [{"mess', media_type="application/json")
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(reply_words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            completed(text)
            return JSONResponse(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        async def events() -> Any:
            for i, word in enumerate(reply_words):
                if config.token_delay_s and i:
                    await asyncio.sleep(config.token_delay_s)
                delta = {"content": word if i == 0 else " " + word}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n"
                if fault == "reset" and i >= len(reply_words) // 2:
                    raise ConnectionResetError("injected reset")
            done = {"index": 0, "delta": {}, "finish_reason": "stop"}
            last = {**base, "object": "chat.completion.chunk", "choices": [done]}
            yield f"data: {json.dumps(last)}\n\n"
            tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield f"data: {json.dumps(tail)}\n\ndata: [DONE]\n\n"
            completed(text)  # every chunk handed to the server: the answer was served

        if fault == "reset" and not body.get("stream"):
            raise ConnectionResetError("injected reset")
        return StreamingResponse(events(), media_type="text/event-stream")

    async def stats_endpoint(request: Request) -> Response:
        return JSONResponse(
            {
                **stats,
                "throttled_at_s": throttled_at,
                "completions_by_prompt": {p: len(t) for p, t in served.items()},
                "served_again": {p: t for p, t in served.items() if len(t) > 1},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/stats", stats_endpoint),
        ]
    )


@contextlib.contextmanager
def spawn(*options: str, log: Path | None = None) -> Iterator[str]:
    """Run this mock in its own process on a free loopback port; yield its base URL.

    ``options`` are its command-line flags (``"--rpm", "3000"``). The output goes
    to ``log`` (default: discarded). On exit the process is terminated, and
    killed after 5 s: uvicorn waits for responses held by a "hang" fault.

    Raises:
        RuntimeError: the mock exited, or did not answer ``/stats`` within 10 s.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "benchmarks.mock_server", "--port", str(port), *options]
    sink = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd, cwd=Path(__file__).resolve().parents[1], stdout=sink, stderr=subprocess.STDOUT
        )
    finally:
        if log is not None:
            sink.close()  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise RuntimeError(f"the mock exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(base + "/stats", timeout=1, trust_env=False)
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the mock did not answer in 10 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--tpm", type=float)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between words")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hang", type=float, default=3600.0, help="seconds a 'hang' fault holds its answer"
    )
    parser.add_argument(
        "--echo-headers",
        action="store_true",
        help="a leaky endpoint: error bodies carry the request's headers (Authorization too)",
    )
    args = parser.parse_args()
    config = MockConfig(
        latency_s=args.latency,
        rpm=args.rpm,
        tpm=args.tpm,
        fault_rate=args.fault_rate,
        token_delay_s=args.token_delay,
        seed=args.seed,
        hang_s=args.hang,
        echo_headers=args.echo_headers,
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
