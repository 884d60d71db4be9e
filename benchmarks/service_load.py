"""200 concurrent streaming clients against ``pipelines serve`` on the mock model server.

Starts ``benchmarks/mock_server.py`` (enforcing ``--rpm``, streaming words
``--token-delay`` apart after ``--latency``) and ``pipelines serve`` pointed at it
with ``PIPELINES_RPM`` set to the same limit, each in its own process. Then opens
``--clients`` concurrent ``POST /v1/pipelines/story/stream`` requests and prints:
errors (non-200, an ``error`` event, or no ``end`` event), time to first event
and to the ``end`` event (p50/p95, seconds), wall time over the rate-limit bound,
and whether the budget held (the mock answered no 429 and admitted every request).

Run: ``.venv/bin/python -m benchmarks.service_load --clients 200 --rpm 1200``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from benchmarks.rate_limits import mock


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def service(model_base: str, rpm: float, max_in_flight: int, margin: float) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "OPENAI_BASE_URL": model_base + "/v1",
        "OPENAI_API_KEY": "mock-key",
        "PIPELINES_MODEL": "mock",
        "PIPELINES_RPM": str(rpm),
        "PIPELINES_MAX_IN_FLIGHT": str(max_in_flight),
        "PIPELINES_RATE_MARGIN": str(margin),
    }
    cmd = [sys.executable, "-m", "lc_async_pipelines", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("pipelines serve did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def one_client(client: httpx.AsyncClient, base: str, n: int) -> dict[str, Any]:
    start = time.perf_counter()
    first: float | None = None
    kinds: list[str] = []
    try:
        body = {"input": f"a lighthouse keeper number {n}", "max_words": 40}
        async with client.stream("POST", base + "/v1/pipelines/story/stream", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    first = first or time.perf_counter() - start
                    kinds.append(line.split(":", 1)[1].strip())
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__}
    if "error" in kinds or kinds[-1:] != ["end"]:
        return {"error": f"events ended with {kinds[-1:]}"}
    return {"first_s": first, "end_s": time.perf_counter() - start}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rpm", type=float, default=1200, help="the mock's limit and the budget")
    parser.add_argument("--latency", type=float, default=0.3, help="mock seconds before a reply")
    parser.add_argument("--token-delay", type=float, default=0.01, help="mock seconds per word")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--rate-margin", type=float, default=0.01, help="PIPELINES_RATE_MARGIN")
    args = parser.parse_args()
    with (
        mock(args.rpm, args.latency, "--token-delay", str(args.token_delay)) as model,
        service(model, args.rpm, args.max_in_flight, args.rate_margin) as base,
    ):
        limits = httpx.Limits(max_connections=args.clients + 10)
        async with httpx.AsyncClient(limits=limits, timeout=300) as client:
            # One request first, as a running service has served before: the very
            # first call through the SDK is slow to leave (lazy set-up), and the
            # calls paced behind it then reach the model close together.
            warm = await client.post(base + "/v1/pipelines/story/invoke", json={"input": "warm"})
            warm.raise_for_status()
            await asyncio.sleep(1.5)  # past the mock's one-second window
            before = (await client.get(model + "/stats")).json()
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(one_client(client, base, n) for n in range(args.clients))
            )
            wall = time.perf_counter() - t0
            stats = (await client.get(model + "/stats")).json()
            health = (await client.get(base + "/healthz")).json()
    errors = [r["error"] for r in results if "error" in r]
    first = [r["first_s"] for r in results if "first_s" in r]
    end = [r["end_s"] for r in results if "end_s" in r]
    bound = args.clients / (args.rpm / 60)
    requests = stats.get("requests", 0) - before.get("requests", 0)
    throttled = stats.get("429_rate_limit", 0) - before.get("429_rate_limit", 0)
    print(json.dumps({k: v for k, v in vars(args).items()}))
    print(
        json.dumps(
            {
                "errors": len(errors),
                "error_kinds": sorted(set(errors)),
                "first_event_p50_s": _pct(first, 0.5),
                "first_event_p95_s": _pct(first, 0.95),
                "end_p50_s": _pct(end, 0.5),
                "end_p95_s": _pct(end, 0.95),
                "wall_s": round(wall, 2),
                "wall/bound": round(wall / bound, 3),
                "model_requests": requests,
                "model_429s": throttled,
                "model_429s_at_s": stats.get("throttled_at_s", []),  # since the warm-up
                "budget_held": throttled == 0 and requests == args.clients,
                "service_in_flight_after": health["in_flight"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
