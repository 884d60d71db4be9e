"""A local OpenAI-compatible mock for benchmarks and fault tests (loopback only).

``POST /v1/chat/completions``, plain and streamed (SSE, with usage in the last
chunk), answers ``"echo: <last user message>"`` cut to ``max_tokens`` words, so a
test can check that every output belongs to its own input. It can:

- wait ``latency_s`` before answering, and ``token_delay_s`` between streamed words;
- enforce requests and tokens per minute over one-second windows (each opened by
  the first request after the last one ended), answering 429 with ``Retry-After``
  and ``retry-after-ms`` when over; every answer of a limited mock carries
  OpenAI's headers (https://platform.openai.com/docs/guides/rate-limits):
  ``x-ratelimit-limit-requests``/``-tokens``, ``x-ratelimit-remaining-requests``/``-tokens``
  and ``x-ratelimit-reset-requests``/``-tokens``, for the window as it stands
  when the answer leaves (the limit and what remains of it per window; the
  reset as ``"318ms"``, the time until the window ends);
- inject faults at ``fault_rate``: 429, 500, 503, a connection dropped
  mid-response, a truncated JSON body, and a response that hangs (``hang_s``);
- with ``echo_headers``, play a leaky endpoint: every error body (429, 500,
  503) carries the request's headers, ``Authorization`` included, both as an
  object and inside its message text.

It plays OpenAI's flex tier (https://platform.openai.com/docs/guides/flex-processing):
a request with ``service_tier: "flex"`` waits ``latency_s * flex_latency_factor``
(slower than standard), and a ``flex_unavailable_rate`` share of flex requests
is refused at once with a 429 "Resource Unavailable" (error code
``resource_unavailable``; OpenAI does not charge for it), its rate-limit
headers showing the account's limits untouched. Every answer echoes
``service_tier`` as OpenAI does: ``"flex"`` for a flex request,
``"default"`` for the rest.

It also plays OpenAI's Batch API (https://platform.openai.com/docs/guides/batch):
``POST /v1/files`` (multipart upload, ``purpose=batch``), ``GET
/v1/files/{id}`` and ``/v1/files/{id}/content``, and ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches``
(newest first, ``limit`` and ``after``). A batch checks its input file as
OpenAI does (JSON lines, one endpoint, one model, unique ``custom_id``s; else
it ends ``failed`` with ``errors``), stays ``in_progress`` for
``batch_delay_s``, then answers every line as ``/v1/chat/completions`` would
(no rate limit, no fault) into an output file, except a ``batch_fail_rate``
share of lines, which go to the error file (half as a 500 response, half with
``response: null``); a ``batch_expire_rate`` share of batches end ``expired``
with half their lines done (rounded up) and the rest in the error file as
``batch_expired``, as OpenAI reports lines a batch did not reach. With
``batch_progress``, a batch's ``request_counts.completed`` grows evenly over
``batch_delay_s`` as it is polled, and a cancelled batch has done the lines
counted when it was cancelled (else half).

Counters (requests, 429s, faults by kind) are at ``GET /stats``, with
``completed`` (answers served whole, status 200), ``completions_by_prompt``
(the same per prompt, the last user message) and ``served_again`` (the
wall-clock times at which each prompt served more than once was served)
and ``admitted_tokens`` (each request the limits admitted, its tokens, in order):
a prompt served twice is a finished call paid twice (batch lines count
there too). Flex counters: ``flex_requests``, ``429_flex_unavailable``,
``completed_flex``. Batch counters: ``batches_created``, ``batches_cancelled``,
``files_uploaded``, ``batch_lines`` (lines answered), ``batch_lines_failed``.

Run: ``python benchmarks/mock_server.py --port 8123 --rpm 3000 --fault-rate 0.2``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from benchmarks._process import serving

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
    batch_delay_s: float = 0.0
    batch_fail_rate: float = 0.0
    batch_expire_rate: float = 0.0
    batch_progress: bool = False
    flex_latency_factor: float = 3.0
    flex_unavailable_rate: float = 0.0


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


def _reply(body: dict[str, Any]) -> tuple[str, list[str], dict[str, int]]:
    """The mock's answer to a chat completion body: (prompt, reply words, usage)."""
    text = _words(body.get("messages", []))
    # Only ``max_tokens``, as before: langchain-openai sends ``max_completion_tokens``,
    # which the mock has always left at its default of 64 words.
    max_tokens = int(body.get("max_tokens") or 64)
    reply_words = ("echo: " + text).split()[:max_tokens]
    prompt_tokens = max(1, len(text) // 4)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(reply_words),
        "total_tokens": prompt_tokens + len(reply_words),
    }
    return text, reply_words, usage


def _form_parts(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart/form-data body with the standard library: name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            parts[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


_BATCH_OPEN = ("validating", "in_progress", "finalizing", "cancelling")


def create_app(config: MockConfig) -> Starlette:
    """Return the Starlette app of the mock for ``config``."""
    rng = random.Random(config.seed)
    stats: Counter[str] = Counter()
    admitted_tokens: list[int] = []  # each admitted request's tokens, in order
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

    def roll_window(now: float) -> None:
        if now - window.started >= 1.0:
            window.started, window.requests, window.tokens = now, 0, 0

    def limit_headers() -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the current window (none if unlimited)."""
        now = time.monotonic()
        roll_window(now)
        reset = f"{max(0.0, 1.0 - (now - window.started)) * 1000:.0f}ms"
        headers: dict[str, str] = {}
        for kind, per_minute, used in (
            ("requests", config.rpm, window.requests),
            ("tokens", config.tpm, window.tokens),
        ):
            if per_minute:
                limit = int(per_minute / 60)
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
                headers[f"x-ratelimit-reset-{kind}"] = reset if used else "0ms"
        return headers

    def over_limit(tokens: int) -> float | None:
        now = time.monotonic()
        roll_window(now)
        rps = config.rpm / 60 if config.rpm else None
        tps = config.tpm / 60 if config.tpm else None
        if (rps and window.requests + 1 > rps) or (tps and window.tokens + tokens > tps):
            return max(0.0, 1.0 - (now - window.started))
        window.requests += 1
        window.tokens += tokens
        stats["tokens_admitted"] += tokens
        admitted_tokens.append(tokens)
        return None

    async def completions(request: Request) -> Response:
        body = await request.json()
        stats["requests"] += 1
        first_request[:] = first_request or [time.monotonic()]
        text, reply_words, usage = _reply(body)
        flex = body.get("service_tier") == "flex"
        if flex:
            stats["flex_requests"] += 1
            if rng.random() < config.flex_unavailable_rate:
                stats["429_flex_unavailable"] += 1
                error = error_body(request, "Resource unavailable: no flex capacity", "flex")
                error["error"]["code"] = "resource_unavailable"
                return JSONResponse(error, status_code=429, headers=limit_headers())
        wait = over_limit(usage["total_tokens"])
        if wait is not None:
            stats["429_rate_limit"] += 1
            if len(throttled_at) < 20:
                throttled_at.append(round(time.monotonic() - first_request[0], 3))
            retry_ms = max(wait, config.retry_after_s) * 1000
            headers = {
                **limit_headers(),
                "retry-after": f"{retry_ms / 1000:.3f}",
                "retry-after-ms": f"{retry_ms:.0f}",
            }
            error = error_body(request, "rate limit", "rate_limit_exceeded")
            return JSONResponse(error, status_code=429, headers=headers)
        fault = rng.choice(config.faults) if rng.random() < config.fault_rate else None
        if fault:
            stats[f"fault_{fault}"] += 1
        if config.latency_s:
            await asyncio.sleep(config.latency_s * (config.flex_latency_factor if flex else 1.0))
        if fault in ("429", "500", "503"):
            headers = {**limit_headers(), "retry-after-ms": f"{config.retry_after_s * 1000:.0f}"}
            error = error_body(request, f"injected {fault}", "server_error")
            return JSONResponse(error, status_code=int(fault), headers=headers)
        if fault == "hang":
            await asyncio.sleep(config.hang_s)
            if await request.is_disconnected():  # the client gave up: nothing is served
                stats["hang_abandoned"] += 1
                return Response(status_code=499)
        # the model asked for, as OpenAI answers (a price table finds it by name)
        model = str(body.get("model") or "mock")
        base = {
            "id": f"mock-{stats['requests']}",
            "created": int(time.time()),
            "model": model,
            "service_tier": "flex" if flex else "default",
        }
        if fault == "truncated":
            return Response('{"id": "mock", "choices": [{"mess', media_type="application/json")
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(reply_words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            completed(text)
            stats["completed_flex"] += flex
            return JSONResponse(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage},
                headers=limit_headers(),
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
            stats["completed_flex"] += flex

        if fault == "reset" and not body.get("stream"):
            raise ConnectionResetError("injected reset")
        return StreamingResponse(events(), media_type="text/event-stream", headers=limit_headers())

    # The Batch API: files and batches in memory, a batch's lines answered when
    # it is first looked at after batch_delay_s (no background task to stop).
    files: dict[str, dict[str, Any]] = {}
    contents: dict[str, bytes] = {}
    batches: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    def new_file(data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-mock{next(ids):06d}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        files[file_id], contents[file_id] = meta, data
        return meta

    def not_found(what: str) -> Response:
        error = {"message": f"No such {what}", "type": "invalid_request_error"}
        return JSONResponse({"error": error}, status_code=404)

    async def upload(request: Request) -> Response:
        parts = _form_parts(request.headers.get("content-type", ""), await request.body())
        purpose = parts.get("purpose", (None, b""))[1].decode()
        filename, data = parts.get("file", (None, b""))
        if "file" not in parts or not purpose:
            error = {"message": "file and purpose are required", "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=400)
        stats["files_uploaded"] += 1
        return JSONResponse(new_file(data, purpose, filename or "upload.jsonl"))

    async def file_meta(request: Request) -> Response:
        meta = files.get(request.path_params["file_id"])
        return JSONResponse(meta) if meta else not_found("file")

    async def file_content(request: Request) -> Response:
        data = contents.get(request.path_params["file_id"])
        if data is None:
            return not_found("file")
        return Response(data, media_type="application/octet-stream")

    def check_lines(batch: dict[str, Any], data: bytes) -> list[dict[str, Any]] | str:
        """The input file's lines, or why OpenAI would fail the batch."""
        lines, seen, models = [], set(), set()
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                custom_id, body = line["custom_id"], line["body"]
            except (ValueError, KeyError, TypeError):
                return f"line {number}: not a request line"
            if line.get("url") != batch["endpoint"] or line.get("method") != "POST":
                return f"line {number}: url or method differs from the batch's endpoint"
            if custom_id in seen:
                return f"line {number}: duplicate custom_id {custom_id}"
            seen.add(custom_id)
            models.add(body.get("model"))
            if body.get("stream"):
                return f"line {number}: streaming is not supported in a batch"
            lines.append(line)
        if len(models) > 1:
            return f"the file mixes models: {sorted(map(str, models))}"
        return lines or "the input file has no requests"

    def answer_line(line: dict[str, Any], batch_id: str, n: int) -> tuple[bool, dict[str, Any]]:
        """One line's result: (in the output file?, the result line)."""
        result: dict[str, Any] = {"id": f"batch_req_{batch_id}_{n}", "custom_id": line["custom_id"]}
        if rng.random() < config.batch_fail_rate:
            stats["batch_lines_failed"] += 1
            error = {"message": "injected batch line failure", "type": "server_error"}
            if n % 2:
                result["response"] = {
                    "status_code": 500,
                    "request_id": f"req_{n}",
                    "body": {"error": error},
                }
                result["error"] = None
            else:
                result["response"] = None
                result["error"] = {"code": "server_error", "message": error["message"]}
            return False, result
        text, reply_words, usage = _reply(line["body"])
        message = {"role": "assistant", "content": " ".join(reply_words)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body = {
            "id": f"chatcmpl-{batch_id}-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": line["body"].get("model", "mock"),
            "choices": [choice],
            "usage": usage,
        }
        result["response"] = {"status_code": 200, "request_id": f"req_{n}", "body": body}
        result["error"] = None
        stats["batch_lines"] += 1
        completed(text)
        return True, result

    def finish(batch: dict[str, Any], status: str) -> None:
        lines = check_lines(batch, contents.get(batch["input_file_id"], b""))
        now = int(time.time())
        if isinstance(lines, str):
            batch.update(status="failed", failed_at=now)
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": lines, "line": None}],
            }
            return
        done_lines, error_lines = [], []
        expire = status == "in_progress" and rng.random() < config.batch_expire_rate
        half = (len(lines) + 1) // 2  # an expired or cancelled batch reached half its lines
        reached = half if expire or status == "cancelling" else len(lines)
        if status == "cancelling" and "_reached" in batch:  # batch_progress: as counted then
            reached = min(len(lines), batch["_reached"])
        cut = "batch_expired" if expire else "batch_cancelled"
        for n, line in enumerate(lines):
            if n >= reached:
                message = f"This request could not be executed before the batch {cut[6:]}."
                error_lines.append(
                    {
                        "id": f"batch_req_{batch['id']}_{n}",
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": cut, "message": message},
                    }
                )
                continue
            ok, result = answer_line(line, batch["id"], n)
            (done_lines if ok else error_lines).append(result)

        def store(rows: list[dict[str, Any]], kind: str) -> str | None:
            if not rows:
                return None
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
            return str(new_file(data, "batch_output", f"{batch['id']}_{kind}.jsonl")["id"])

        final = "cancelled" if status == "cancelling" else "expired" if expire else "completed"
        batch.update(
            status=final,
            output_file_id=store(done_lines, "output"),
            error_file_id=store(error_lines, "error"),
            request_counts={
                "total": len(lines),
                "completed": len(done_lines),
                "failed": len(error_lines),
            },
        )
        batch[f"{final}_at"] = now

    def lines_done(batch: dict[str, Any]) -> int:
        """Lines an in-progress batch has done so far (batch_progress: evenly over the delay)."""
        total = len(contents.get(batch["input_file_id"], b"").splitlines())
        elapsed = time.monotonic() - batch["_started"]
        share = min(1.0, elapsed / config.batch_delay_s) if config.batch_delay_s else 1.0
        counts = {"total": total, "completed": int(total * share), "failed": 0}
        batch["request_counts"] = counts
        return counts["completed"]

    def advance(batch: dict[str, Any]) -> dict[str, Any]:
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        if config.batch_progress and batch["status"] == "in_progress":
            lines_done(batch)
        if batch["status"] == "cancelling" or (
            batch["status"] == "in_progress"
            and time.monotonic() - batch["_started"] >= config.batch_delay_s
        ):
            finish(batch, batch["status"])
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    async def create_batch(request: Request) -> Response:
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in files:
            return not_found("file")
        if body.get("endpoint") not in ("/v1/chat/completions", "/v1/responses"):
            error = {"message": "unsupported endpoint", "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=400)
        stats["batches_created"] += 1
        batch_id = f"batch_mock{next(ids):06d}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "expires_at": int(time.time()) + 86_400,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_started": time.monotonic(),
        }
        batches[batch_id] = batch
        return JSONResponse(advance(batch))

    async def get_batch(request: Request) -> Response:
        batch = batches.get(request.path_params["batch_id"])
        return JSONResponse(advance(batch)) if batch else not_found("batch")

    async def cancel_batch(request: Request) -> Response:
        batch = batches.get(request.path_params["batch_id"])
        if batch is None:
            return not_found("batch")
        if batch["status"] in _BATCH_OPEN:
            if config.batch_progress and batch["status"] == "in_progress":
                batch["_reached"] = lines_done(batch)
            stats["batches_cancelled"] += 1
            batch.update(status="cancelling", cancelling_at=int(time.time()))
        return JSONResponse({k: v for k, v in batch.items() if not k.startswith("_")})

    async def list_batches(request: Request) -> Response:
        newest = sorted(batches.values(), key=lambda b: b["id"], reverse=True)
        after = request.query_params.get("after")
        if after:
            newest = [b for b in newest if b["id"] < after]
        limit = int(request.query_params.get("limit", 20))
        page = [advance(b) for b in newest[:limit]]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(newest) > limit,
            }
        )

    async def stats_endpoint(request: Request) -> Response:
        return JSONResponse(
            {
                **stats,
                "throttled_at_s": throttled_at,
                "completions_by_prompt": {p: len(t) for p, t in served.items()},
                "served_again": {p: t for p, t in served.items() if len(t) > 1},
                "admitted_tokens": admitted_tokens,
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/files", upload, methods=["POST"]),
            Route("/v1/files/{file_id}", file_meta),
            Route("/v1/files/{file_id}/content", file_content),
            Route("/v1/batches", create_batch, methods=["POST"]),
            Route("/v1/batches", list_batches),
            Route("/v1/batches/{batch_id}", get_batch),
            Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
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
    with serving("benchmarks.mock_server", "the mock", options, log) as base:
        yield base


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--tpm", type=float)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated kinds of fault to inject, of {','.join(FAULTS)}",
    )
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between words")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hang", type=float, default=3600.0, help="seconds a 'hang' fault holds its answer"
    )
    parser.add_argument(
        "--batch-delay-s", type=float, default=0.0, help="seconds a batch stays in progress"
    )
    parser.add_argument(
        "--batch-fail-rate", type=float, default=0.0, help="share of batch lines that fail"
    )
    parser.add_argument(
        "--batch-expire-rate",
        type=float,
        default=0.0,
        help="share of batches that expire with half their lines done",
    )
    parser.add_argument(
        "--batch-progress",
        action="store_true",
        help="a batch's request_counts grow evenly over --batch-delay-s; a cancelled batch "
        "has done the lines counted then",
    )
    parser.add_argument(
        "--flex-latency-factor",
        type=float,
        default=3.0,
        help="a flex request waits --latency times this (default 3)",
    )
    parser.add_argument(
        "--flex-unavailable-rate",
        type=float,
        default=0.0,
        help="share of flex requests refused with a 429 resource_unavailable",
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
        faults=tuple(kind for kind in args.faults.split(",") if kind),
        token_delay_s=args.token_delay,
        seed=args.seed,
        hang_s=args.hang,
        echo_headers=args.echo_headers,
        batch_delay_s=args.batch_delay_s,
        batch_fail_rate=args.batch_fail_rate,
        batch_expire_rate=args.batch_expire_rate,
        batch_progress=args.batch_progress,
        flex_latency_factor=args.flex_latency_factor,
        flex_unavailable_rate=args.flex_unavailable_rate,
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
