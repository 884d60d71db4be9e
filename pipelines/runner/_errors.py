"""Which failures are worth retrying, and how long the server asked us to wait."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time

import httpx
import openai
from langchain_core.exceptions import (
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
    OutputParserException,
)

_TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# langchain_core.language_models.chat_models raises this ValueError when a
# stream ends with no chunk: the server sent a garbled or cut response.
_EMPTY_STREAM = "No generations found in stream"


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry can fix.

    Transient: 408/409/429/5xx, timeouts, dropped connections, a response
    body cut short (malformed JSON, a stream with no chunk), and an output
    that does not parse or fit its schema (``OutputParserException``, which
    :class:`~lc_async_pipelines.errors.OutputValidationError` is: the model
    samples again). Permanent: 400,
    401, 403, 404, 422, a missing template variable (``KeyError``), other bad
    input (``ValueError``, ``TypeError``), and anything else unknown.
    """
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _TRANSIENT_STATUS
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return True
    if isinstance(exc, OutputParserException):
        return True
    if isinstance(exc, ValueError) and str(exc).startswith(_EMPTY_STREAM):
        return True
    return isinstance(
        exc,
        openai.APITimeoutError
        | openai.APIConnectionError
        | httpx.TimeoutException
        | httpx.TransportError
        | asyncio.TimeoutError
        | ConnectionError
        # provider-neutral errors that LangChain integrations raise
        | ModelRateLimitError
        | ModelConnectionError
        | ModelTimeoutError,
    )


def is_rate_limit(exc: BaseException) -> bool:
    """True for a provider's "slow down": HTTP 429 or LangChain's ``ModelRateLimitError``."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429
    return isinstance(exc, ModelRateLimitError)


def _parse_duration(value: str) -> float | None:
    """Parse ``"1.5"``, ``"20ms"`` or ``"6m0s"`` (OpenAI's ``x-ratelimit-reset-*``) as seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after(exc: BaseException) -> float | None:
    """Return the wait the server asked for, in seconds, or None.

    Reads ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date, RFC 9110
    §10.2.3) and OpenAI's ``x-ratelimit-reset-requests`` / ``-tokens``
    (https://platform.openai.com/docs/guides/rate-limits), taking the largest.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    waits: list[float] = []
    if (ms := headers.get("retry-after-ms")) is not None:
        parsed = _parse_duration(ms)
        if parsed is not None:
            waits.append(parsed / 1000)
    if (ra := headers.get("retry-after")) is not None:
        parsed = _parse_duration(ra)
        if parsed is None:
            try:
                parsed = email.utils.parsedate_to_datetime(ra).timestamp() - time.time()
            except (TypeError, ValueError):
                parsed = None
        if parsed is not None:
            waits.append(parsed)
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        if (value := headers.get(name)) is not None and (parsed := _parse_duration(value)):
            waits.append(parsed)
    return max(0.0, max(waits)) if waits else None
