"""A local mock of Anthropic's Messages and Message Batches API for tests and benchmarks (loopback).

``POST /v1/messages`` (not streamed) answers ``"echo: <last user message>"``
cut to ``max_tokens`` words, as a ``Message`` with ``usage``
(https://docs.anthropic.com/en/api/messages), so a test can check that
every output belongs to its own input. With ``api_key`` set, a request whose
``x-api-key`` (or ``Authorization: Bearer``, as anthropic 2.x sends it)
differs gets a 401 ``authentication_error``; with ``models`` set, another
model gets a 404 ``not_found_error`` (as Anthropic answers).

Message Batches (https://docs.anthropic.com/en/api/creating-message-batches):
``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}]}``;
a ``custom_id`` must match ``^[a-zA-Z0-9_-]{1,64}$`` and be unique in the
batch, else a 400), ``GET /v1/messages/batches/{id}``, ``GET
/v1/messages/batches`` (newest first; ``limit``, ``after_id``,
``before_id``), ``POST /v1/messages/batches/{id}/cancel`` and ``GET
/v1/messages/batches/{id}/results`` (JSON lines, at the batch's
``results_url``). A batch stays ``in_progress`` for ``batch_delay_s``, then
ends: every request is answered as ``/v1/messages`` would (an unknown model:
an ``errored`` result with ``not_found_error``), except a ``batch_error_rate``
share, ``errored`` with an ``api_error``, and a ``batch_expire_rate`` share,
``expired``. A batch cancelled while in progress ends with half its requests
(rounded up) answered and the rest ``canceled``.

Counters at ``GET /stats``: ``requests`` (single ``/v1/messages`` calls),
``completed`` (answers served, single or in a batch),
``completions_by_prompt`` (the same per prompt, the last user message) and
``served_again`` (the wall-clock times of each prompt served more than
once): a prompt served twice is a call paid twice. Batch counters:
``batches_created``, ``batches_cancelled``, ``batch_requests`` (requests
submitted), ``batch_succeeded``, ``batch_errored``, ``batch_expired``,
``batch_canceled``; ``401`` and ``404`` count refused requests.

Run: ``python -m benchmarks.anthropic_mock --port 8124 --batch-delay-s 5 --batch-error-rate 0.1``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks._process import answers, free_port, running

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class AnthropicMockConfig:
    """Behaviour of the mock: key, models, batch timing (s) and failure shares."""

    api_key: str | None = None
    models: tuple[str, ...] = ()
    latency_s: float = 0.0
    batch_delay_s: float = 0.0
    batch_error_rate: float = 0.0
    batch_expire_rate: float = 0.0
    seed: int = 0


def _error(status: int, kind: str, message: str) -> JSONResponse:
    """An Anthropic error response."""
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


def _prompt(params: dict[str, Any]) -> str:
    """The text of the last user message."""
    user = [m for m in params.get("messages", []) if m.get("role") == "user"]
    content = user[-1]["content"] if user else ""
    if isinstance(content, list):
        content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def _message(params: dict[str, Any], message_id: str) -> tuple[str, dict[str, Any]]:
    """The mock's answer to Messages params: (prompt, a ``Message``)."""
    text = _prompt(params)
    max_tokens = int(params.get("max_tokens") or 64)
    words = ("echo: " + text).split()
    reply = words[:max_tokens]
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": str(params.get("model") or "mock"),
        "content": [{"type": "text", "text": " ".join(reply)}],
        "stop_reason": "max_tokens" if len(words) > max_tokens else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(text) // 4),
            "output_tokens": len(reply),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    return text, message


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def create_app(config: AnthropicMockConfig) -> Starlette:
    """Return the Starlette app of the mock for ``config``."""
    rng = random.Random(config.seed)
    stats: Counter[str] = Counter()
    served: dict[str, list[float]] = {}  # prompt -> wall-clock times of answers served
    batches: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    def completed(prompt: str) -> None:
        stats["completed"] += 1
        served.setdefault(prompt, []).append(time.time())

    def refused(request: Request) -> JSONResponse | None:
        given = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")  # the SDK sends the key one way or the other
        if config.api_key is not None and given != config.api_key:
            stats["401"] += 1
            return _error(401, "authentication_error", "invalid x-api-key")
        return None

    def unknown_model(params: dict[str, Any]) -> str | None:
        model = str(params.get("model") or "")
        return None if not config.models or model in config.models else model

    async def messages(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        params = await request.json()
        stats["requests"] += 1
        if params.get("stream"):
            return _error(400, "invalid_request_error", "this mock does not stream")
        if (model := unknown_model(params)) is not None:
            stats["404"] += 1
            return _error(404, "not_found_error", f"model: {model}")
        if config.latency_s:
            await asyncio.sleep(config.latency_s)
        text, message = _message(params, f"msg_mock{next(ids):06d}")
        completed(text)
        return JSONResponse(message)

    def public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def result(item: dict[str, Any], batch_id: str, n: int) -> dict[str, Any]:
        params = item["params"]
        if (model := unknown_model(params)) is not None:
            error = {"type": "not_found_error", "message": f"model: {model}"}
            return {"type": "errored", "error": {"type": "error", "error": error}}
        roll = rng.random()
        if roll < config.batch_error_rate:
            error = {"type": "api_error", "message": "injected batch request failure"}
            return {"type": "errored", "error": {"type": "error", "error": error}}
        if roll < config.batch_error_rate + config.batch_expire_rate:
            return {"type": "expired"}
        text, message = _message(params, f"msg_{batch_id}_{n}")
        completed(text)
        return {"type": "succeeded", "message": message}

    def finish(batch: dict[str, Any], base_url: str) -> None:
        items = batch["_requests"]
        reached = (len(items) + 1) // 2 if batch["processing_status"] == "canceling" else len(items)
        lines, counts = [], Counter[str]()
        for n, item in enumerate(items):
            outcome = result(item, batch["id"], n) if n < reached else {"type": "canceled"}
            counts[outcome["type"]] += 1
            stats[f"batch_{outcome['type']}"] += 1
            lines.append(json.dumps({"custom_id": item["custom_id"], "result": outcome}) + "\n")
        batch["_results"] = "".join(lines).encode()
        batch.update(
            processing_status="ended",
            ended_at=_iso(time.time()),
            results_url=f"{base_url}v1/messages/batches/{batch['id']}/results",
            request_counts={
                "processing": 0,
                "succeeded": counts["succeeded"],
                "errored": counts["errored"],
                "canceled": counts["canceled"],
                "expired": counts["expired"],
            },
        )

    def advance(batch: dict[str, Any], request: Request) -> dict[str, Any]:
        status = batch["processing_status"]
        due = time.monotonic() - batch["_started"] >= config.batch_delay_s
        if status == "canceling" or (status == "in_progress" and due):
            finish(batch, str(request.base_url))
        return public(batch)

    async def create_batch(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: a non-empty list is required")
        seen: set[str] = set()
        for n, item in enumerate(requests):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return _error(400, "invalid_request_error", f"requests.{n}.custom_id: invalid")
            if cid in seen:
                return _error(400, "invalid_request_error", f"requests.{n}: duplicate custom_id")
            if not isinstance(item.get("params"), dict) or item["params"].get("stream"):
                return _error(400, "invalid_request_error", f"requests.{n}.params: invalid")
            seen.add(cid)
        stats["batches_created"] += 1
        stats["batch_requests"] += len(requests)
        now = time.time()
        batch_id = f"msgbatch_mock{next(ids):06d}"
        batch = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(requests),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": _iso(now),
            "expires_at": _iso(now + timedelta(hours=24).total_seconds()),
            "ended_at": None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": None,
            "_requests": requests,
            "_started": time.monotonic(),
        }
        batches[batch_id] = batch
        return JSONResponse(public(batch))

    def find(request: Request) -> dict[str, Any] | None:
        return batches.get(request.path_params["batch_id"])

    def not_found() -> JSONResponse:
        return _error(404, "not_found_error", "no such message batch")

    async def get_batch(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        batch = find(request)
        return JSONResponse(advance(batch, request)) if batch else not_found()

    async def cancel_batch(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        batch = find(request)
        if batch is None:
            return not_found()
        if batch["processing_status"] == "in_progress":
            stats["batches_cancelled"] += 1
            batch.update(processing_status="canceling", cancel_initiated_at=_iso(time.time()))
        return JSONResponse(public(batch))

    async def batch_results(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        batch = find(request)
        if batch is None:
            return not_found()
        advance(batch, request)
        if "_results" not in batch:
            return _error(400, "invalid_request_error", "the batch has not ended")
        return Response(batch["_results"], media_type="application/binary")

    async def list_batches(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        newest = sorted(batches.values(), key=lambda b: b["id"], reverse=True)
        after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
        if after:
            newest = [b for b in newest if b["id"] < after]
        if before:
            newest = [b for b in newest if b["id"] > before]
        limit = int(request.query_params.get("limit", 20))
        page = [advance(b, request) for b in newest[:limit]]
        return JSONResponse(
            {
                "data": page,
                "has_more": len(newest) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def stats_endpoint(request: Request) -> Response:
        return JSONResponse(
            {
                **stats,
                "completions_by_prompt": {p: len(t) for p, t in served.items()},
                "served_again": {p: t for p, t in served.items() if len(t) > 1},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/batches", create_batch, methods=["POST"]),
            Route("/v1/messages/batches", list_batches),
            Route("/v1/messages/batches/{batch_id}", get_batch),
            Route("/v1/messages/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
            Route("/v1/messages/batches/{batch_id}/results", batch_results),
            Route("/stats", stats_endpoint),
        ]
    )


@contextlib.contextmanager
def spawn(*options: str, log: Path | None = None) -> Iterator[str]:
    """Run this mock in its own process on a free loopback port; yield its base URL.

    ``options`` are its command-line flags (``"--batch-delay-s", "2"``); the
    base URL has no ``/v1`` (``ANTHROPIC_BASE_URL``). Output goes to ``log``.

    Raises:
        RuntimeError: the mock exited, or did not answer ``/stats`` within 10 s.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.anthropic_mock", "--port", str(port), *options]
    base = f"http://127.0.0.1:{port}"
    root = Path(__file__).resolve().parents[1]
    ready = partial(answers, base + "/stats")
    with running(cmd, ready=ready, name="the Anthropic mock", log=log, cwd=root):
        yield base


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--api-key", help="the only x-api-key accepted (default: any)")
    parser.add_argument(
        "--models", default="", help="comma-separated models served (default: any name)"
    )
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--batch-delay-s", type=float, default=0.0, help="seconds a batch stays in progress"
    )
    parser.add_argument(
        "--batch-error-rate", type=float, default=0.0, help="share of batch results errored"
    )
    parser.add_argument(
        "--batch-expire-rate", type=float, default=0.0, help="share of batch results expired"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = AnthropicMockConfig(
        api_key=args.api_key,
        models=tuple(m for m in args.models.split(",") if m),
        latency_s=args.latency,
        batch_delay_s=args.batch_delay_s,
        batch_error_rate=args.batch_error_rate,
        batch_expire_rate=args.batch_expire_rate,
        seed=args.seed,
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
