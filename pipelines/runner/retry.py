"""Retries: the policy (how often, how long to wait) and which failures are worth one.

:class:`RetryPolicy` drives tenacity for both the runner's item retries and the
budgeted model's per-call retries; :func:`is_transient` tells a failure a retry
can fix from one it cannot, and :func:`retry_after` reads how long the server
asked us to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from langchain_core.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
    OutputParserException,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lc_async_pipelines.runner.checks import check_number

__all__ = [
    "RateLimitHeaders",
    "RetryPolicy",
    "is_paced",
    "is_rate_limit",
    "is_transient",
    "mark_paced",
    "rate_limit_headers",
    "response_headers",
    "retry_after",
]

T = TypeVar("T")

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
    # httpx (not the SDK's httpx2) only raises once something imported it
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return True
    return isinstance(
        exc,
        openai.APITimeoutError
        | openai.APIConnectionError
        | asyncio.TimeoutError
        | ConnectionError
        # provider-neutral errors that LangChain integrations raise (ModelAPIError:
        # a 5xx, as langchain-anthropic raises it and the Message Batches adapter)
        | ModelAPIError
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


def response_headers(exc: BaseException) -> Mapping[str, str] | None:
    """Return the HTTP response headers an error carries (``openai.APIStatusError``), or None."""
    response = getattr(exc, "response", None)
    headers: Mapping[str, str] | None = getattr(response, "headers", None)
    return headers


@dataclass(frozen=True)
class RateLimitHeaders:
    """What a provider's ``x-ratelimit-*`` response headers say (None: header absent).

    OpenAI's names (https://platform.openai.com/docs/guides/rate-limits):
    ``x-ratelimit-remaining-requests`` / ``-tokens`` (what is left of the
    limit) and ``x-ratelimit-reset-requests`` / ``-tokens`` (the time until
    the limit is whole again, ``"1s"``, ``"6m0s"``, ``"20ms"``), also sent by
    OpenAI-compatible servers and the benchmark mock.

    Attributes:
        remaining_requests: requests left before the limit refuses.
        remaining_tokens: tokens left before the limit refuses.
        reset_requests_s: seconds until the requests limit resets.
        reset_tokens_s: seconds until the tokens limit resets.
    """

    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @property
    def present(self) -> bool:
        """True when the response said how much of the limit remains."""
        return self.remaining_requests is not None or self.remaining_tokens is not None


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _duration(headers: Mapping[str, Any], name: str) -> float | None:
    value = headers.get(name)
    return _parse_duration(str(value)) if value is not None else None


def rate_limit_headers(headers: Mapping[str, Any] | None) -> RateLimitHeaders:
    """Read OpenAI's ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers.

    Args:
        headers: an HTTP response's headers (httpx's are case-insensitive; a
            plain mapping should have the lower-case names), or None.
    """
    if not headers:
        return RateLimitHeaders()
    return RateLimitHeaders(
        remaining_requests=_number(headers, "x-ratelimit-remaining-requests"),
        remaining_tokens=_number(headers, "x-ratelimit-remaining-tokens"),
        reset_requests_s=_duration(headers, "x-ratelimit-reset-requests"),
        reset_tokens_s=_duration(headers, "x-ratelimit-reset-tokens"),
    )


def retry_after(exc: BaseException) -> float | None:
    """Return the wait the server asked for, in seconds, or None.

    Reads ``retry-after-ms`` and ``retry-after`` (seconds or an HTTP date, RFC
    9110 §10.2.3), the larger when both are sent; without either, OpenAI's
    ``x-ratelimit-reset-requests`` / ``-tokens``
    (https://platform.openai.com/docs/guides/rate-limits), the larger of those
    whose limit is spent (its ``x-ratelimit-remaining-*`` 0 or absent): a
    limit with room left says when it is whole again, not when to retry.
    """
    headers = response_headers(exc)
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
    if not waits:
        for kind in ("requests", "tokens"):
            remaining = _number(headers, f"x-ratelimit-remaining-{kind}")
            reset = _duration(headers, f"x-ratelimit-reset-{kind}")
            if reset and (remaining is None or remaining <= 0):
                waits.append(reset)
    return max(0.0, max(waits)) if waits else None


_PACED = "_lc_async_pipelines_paced"


def mark_paced(exc: BaseException) -> None:
    """Mark ``exc`` as the failure of a call whose retry a rate budget paces.

    :meth:`RetryPolicy.wait` then adds no backoff of its own before the retry
    (only a ``Retry-After`` the server sent): the budget already spaces the
    retry among the run's requests, and holds it through a 429's pause.
    """
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _PACED, True)


def is_paced(exc: BaseException) -> bool:
    """True when :func:`mark_paced` marked ``exc``."""
    return bool(getattr(exc, _PACED, False))


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures (see ``is_transient``): of each model call, and of items.

    Each model call made through the run's budgeted model is retried on its
    own (``with_budget(..., retry=policy)``), so a map-reduce chunk that fails
    does not repeat its item's calls that succeeded; an item is retried as a
    whole only for failures no call retried (an output that fails its schema).

    Backoff: exponential with full jitter, ``initial * 2**n + U(0, jitter)``
    capped at ``max_wait`` seconds (tenacity's ``wait_exponential_jitter``), or
    the server's ``Retry-After`` when it sent one and it is longer. A call
    behind a rate budget that paces it (``rpm`` or ``tpm``; see
    :func:`mark_paced`) is retried with no backoff but the server's
    ``Retry-After``: the budget spaces it among the run's requests, so a
    backoff on top would only hold the last items of a run.

    Attributes:
        max_retries: retries after the first attempt (0 = one attempt).
        initial: first backoff, seconds.
        max_wait: backoff cap, seconds.
        jitter: added uniform jitter, seconds.
    """

    max_retries: int = 3
    initial: float = 1.0
    max_wait: float = 30.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        check_number("max_retries", self.max_retries, minimum=0, whole=True)
        for name in ("initial", "max_wait", "jitter"):
            check_number(name, getattr(self, name), minimum=0)

    def wait(self) -> Callable[[RetryCallState], float]:
        """Return the tenacity wait strategy of this policy."""
        exponential = wait_exponential_jitter(
            multiplier=self.initial, max=self.max_wait, jitter=self.jitter
        )

        def wait(state: RetryCallState) -> float:
            backoff = exponential(state)
            exc = state.outcome.exception() if state.outcome else None
            asked = retry_after(exc) if exc else None
            if exc is not None and is_paced(exc):
                return min(asked, self.max_wait) if asked is not None else 0.0
            return max(backoff, min(asked, self.max_wait)) if asked is not None else backoff

        return wait

    def retrying(
        self,
        retry_if: Callable[[BaseException], bool] = is_transient,
        *,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> AsyncRetrying:
        """Return tenacity's ``AsyncRetrying`` for this policy (re-raising the last error).

        Args:
            retry_if: which errors are worth another attempt (default: transient ones).
            on_retry: called with the error and the wait (seconds) before each retry.
        """

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None and exc is not None:
                on_retry(exc, float(wait))

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            retry=retry_if_exception(retry_if),
            wait=self.wait(),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(
        self,
        attempt: Callable[[], Awaitable[T]],
        retry_if: Callable[[BaseException], bool] = is_transient,
        *,
        on_retry: Callable[[BaseException, float], None] | None = None,
        on_attempt: Callable[[int], None] | None = None,
    ) -> T:
        """Return ``await attempt()``, retried under this policy (the last error re-raised).

        The first attempt runs on its own: tenacity's machinery costs about
        0.1 ms a call (``benchmarks/overhead.py``) and most calls succeed at
        once. Only after a failure ``retry_if`` accepts does :meth:`retrying`
        take over, handed that failure as its attempt 1, so the waits are the
        policy's, as if it had run all along.

        Args:
            attempt: makes one attempt.
            retry_if: which errors are worth another attempt.
            on_retry: called with the error and the wait (seconds) before each retry.
            on_attempt: called with each attempt's number (1, 2, ...) as it starts.
        """
        if on_attempt is not None:
            on_attempt(1)
        try:
            return await attempt()
        except Exception as exc:
            if self.max_retries == 0 or not retry_if(exc):
                raise
            failed = [exc]
        async for state in self.retrying(retry_if, on_retry=on_retry):
            with state:
                if on_attempt is not None:
                    on_attempt(state.retry_state.attempt_number)
                if failed:  # attempt 1: already made
                    raise failed.pop()
                return await attempt()
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover
