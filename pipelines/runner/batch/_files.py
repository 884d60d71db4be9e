"""Batch API files: request lines in, result lines out, and splitting a stage under the limits.

The formats are OpenAI's (https://platform.openai.com/docs/guides/batch):

- an input line is ``{"custom_id", "method": "POST", "url", "body"}``, where
  ``url`` is the endpoint (``/v1/chat/completions``) and ``body`` the request
  body as the client would have sent it on its own;
- an output or error line is ``{"id", "custom_id", "response": {"status_code",
  "request_id", "body"} | null, "error": {"code", "message"} | null}``. A line
  the batch did not reach (expired, cancelled) is in the error file with
  ``error.code`` ``batch_expired`` or ``batch_cancelled``.

A batch holds one model and one endpoint, at most 50,000 requests and
200 MB; the input tokens of all of a model's batches in progress are capped
per organisation (the "enqueued tokens" limit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lc_async_pipelines._text import estimate_tokens

# Lines a batch did not reach: worth sending again, in a new batch.
_NOT_REACHED = frozenset({"batch_expired", "batch_cancelled"})


def canonical_json(value: Any) -> str:
    """Return ``value`` as JSON with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def body_hash(endpoint: str, body: dict[str, Any]) -> str:
    """Return 32 hex digits (128 bits of sha256) over the endpoint and the canonical body."""
    text = endpoint + "\n" + canonical_json(body)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def custom_id(endpoint: str, body: dict[str, Any], occurrence: int = 0) -> str:
    """Return the ``custom_id`` of the ``occurrence``-th identical request of a run: ``HASH-N``.

    The same request gives the same id in any process, so a resumed run finds
    the batch that already carries it; ``occurrence`` tells identical requests
    of one run apart (a batch's ``custom_id``s must be unique).
    """
    return f"{body_hash(endpoint, body)}-{occurrence}"


def input_tokens(body: dict[str, Any]) -> int:
    """Estimate the input tokens of a request body (its messages or input), 3.5 characters each."""
    parts = body.get("messages", body.get("input", ""))
    return estimate_tokens(parts if isinstance(parts, str) else canonical_json(parts))


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch input file.

    Attributes:
        custom_id: its id in the batch (:func:`custom_id`).
        endpoint: ``/v1/chat/completions`` or ``/v1/responses``.
        body: the request body, without ``stream``.
        line: the JSON line written to the input file, newline included (UTF-8).
        tokens: estimated input tokens (for the enqueued-token limit).
    """

    custom_id: str
    endpoint: str
    body: dict[str, Any]
    line: bytes = field(repr=False)
    tokens: int

    @classmethod
    def make(cls, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchRequest:
        """Build the request and its input line."""
        record = {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        return cls(custom_id, endpoint, body, line, input_tokens(body))

    @property
    def model(self) -> str:
        """The model the request names ("" when it names none)."""
        return str(self.body.get("model") or "")


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold; a stage is split into batches that fit.

    Attributes:
        max_requests: requests per batch (OpenAI: 50,000).
        max_bytes: bytes of the input file (OpenAI: 200 MB).
        max_tokens: estimated input tokens per batch, and of all batches of one
            model in progress at once (the provider's enqueued-token limit of
            your tier); None for no limit.
    """

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    max_tokens: int | None = None


def split_requests(
    requests: Iterable[BatchRequest], limits: BatchLimits
) -> list[list[BatchRequest]]:
    """Group ``requests`` by (endpoint, model) and cut each group into batches within ``limits``.

    Order is kept within a group. A single request larger than a limit gets a
    batch of its own (the provider will say what is wrong with it).

    Returns:
        The batches, each a non-empty list, groups in order of first appearance.
    """
    groups: dict[tuple[str, str], list[BatchRequest]] = {}
    for request in requests:
        groups.setdefault((request.endpoint, request.model), []).append(request)
    batches: list[list[BatchRequest]] = []
    for group in groups.values():
        current: list[BatchRequest] = []
        size = tokens = 0
        for request in group:
            fits = (
                len(current) < limits.max_requests
                and size + len(request.line) <= limits.max_bytes
                and (limits.max_tokens is None or tokens + request.tokens <= limits.max_tokens)
            )
            if current and not fits:
                batches.append(current)
                current, size, tokens = [], 0, 0
            current.append(request)
            size += len(request.line)
            tokens += request.tokens
        if current:
            batches.append(current)
    return batches


def input_file(requests: Sequence[BatchRequest]) -> bytes:
    """Return the JSONL input file of one batch."""
    return b"".join(request.line for request in requests)


@dataclass(frozen=True)
class LineResult:
    """The result of one request of a batch, as the HTTP response it stands for.

    Attributes:
        status: the HTTP status (200 for an answer).
        body: the response body (a chat completion, or ``{"error": {...}}``).
    """

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300


def failed(status: int, message: str, code: str) -> LineResult:
    """Return a failed result shaped like an OpenAI error response."""
    return LineResult(status, {"error": {"message": message, "type": "batch_error", "code": code}})


def parse_results(data: bytes) -> dict[str, LineResult]:
    """Parse an output or error file into ``custom_id -> LineResult``.

    A line with a response keeps its status and body. A line with only an
    error becomes a 503 when the batch did not reach it (``batch_expired``,
    ``batch_cancelled``: sending it again can work), else a 500. Lines that
    are not JSON or carry no ``custom_id`` are skipped: their requests count
    as missing.
    """
    results: dict[str, LineResult] = {}
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        response = line.get("response")
        error: dict[str, Any] = line["error"] if isinstance(line.get("error"), dict) else {}
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            body = response.get("body")
            results[line["custom_id"]] = LineResult(
                response["status_code"], body if isinstance(body, dict) else {}
            )
            continue
        code = str(error.get("code") or "batch_line_failed")
        message = str(error.get("message") or "the batch reported no result for this request")
        results[line["custom_id"]] = failed(503 if code in _NOT_REACHED else 500, message, code)
    return results
