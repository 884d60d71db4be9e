"""A log of the requests and tokens booked over the last window: a provider's per-window count.

A leaky bucket meters a rate, but a provider that enforces a per-minute limit
per second ("quantized", https://platform.openai.com/docs/guides/rate-limits)
counts whole requests in each one-second window, the first at its full size.
Paced at a rate ``r`` a second, a window opened by a call of ``c`` tokens
holds up to ``r + c`` tokens: with calls of 4 tokens against 50 tokens a
second, 13 calls (52 tokens) fit the 0.99 s the bucket gives them, and the
13th is refused (measured against ``benchmarks/mock_server.py`` on a loaded
machine: every 429 of a ``tpm = limit`` run was that 13th call). The log
counts each request when it is sent, and lets one go only when it and the
requests sent within one window before it stay within a window's limits,
whatever the provider's windows' start: so no window of the provider's can
hold more, as long as the requests reach it no more than ``guard_s`` out of
step (the window here is ``window_s + guard_s`` long). A request is counted
when it goes, not when it was due: a caller woken late by a busy event loop
is counted late, as the provider counts it.

Pure arithmetic on times the caller passes (seconds, any monotonic clock):
the in-memory store asks :meth:`WindowLog.wait`, sleeps, asks again and
counts the request with :meth:`WindowLog.add`; the Redis store's script does the same
sums in Lua (:mod:`lc_async_pipelines.runner.limits._redis_scripts`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Booking", "WindowLog"]


@dataclass(eq=False)
class Booking:
    """One request counted in a :class:`WindowLog`.

    Attributes:
        at: when it was sent, seconds on the caller's clock.
        tokens: the tokens it counts for (settled to its usage by :meth:`WindowLog.settle`).
    """

    at: float
    tokens: float


class WindowLog:
    """Requests and tokens sent over the last window, and when the next one fits.

    Args:
        requests: requests a window admits (None: not counted); a provider's
            ``rpm / 60`` for one-second windows.
        tokens: tokens a window admits (None: not counted); ``tpm / 60``.
        window_s: the provider's window, seconds.
        guard_s: how far out of step (seconds) the requests may reach the
            provider: bookings are spread over ``window_s + guard_s``.

    Raises:
        ValueError: a limit, ``window_s`` or ``guard_s`` is out of range.
    """

    def __init__(
        self,
        requests: float | None,
        tokens: float | None,
        *,
        window_s: float = 1.0,
        guard_s: float = 0.0,
    ) -> None:
        if (requests is not None and requests <= 0) or (tokens is not None and tokens <= 0):
            msg = f"window limits must be positive, got {requests} requests and {tokens} tokens"
            raise ValueError(msg)
        if window_s <= 0 or guard_s < 0:
            msg = f"window_s must be positive and guard_s not negative, got {window_s}, {guard_s}"
            raise ValueError(msg)
        self.requests = requests
        self.tokens = tokens
        self.span_s = window_s + guard_s
        self._booked: deque[Booking] = deque()
        self._tokens_booked = 0.0

    def wait(self, tokens: float, now: float) -> float:
        """Seconds from ``now`` until one request of ``tokens`` fits the window (0: now).

        A request larger than a window's tokens fits once nothing else counts
        in its window (no time would fit it better).

        Args:
            tokens: the request's tokens (0 when tokens are not counted).
            now: the current time, seconds.
        """
        self._forget(now)
        count, held, at = len(self._booked), self._tokens_booked, now
        for booking in self._booked:
            if self._fits(count, held, tokens):
                break
            at = booking.at + self.span_s  # the window must have let this one go
            count, held = count - 1, held - booking.tokens
        return at - now

    def add(self, tokens: float, now: float) -> Booking:
        """Count one request of ``tokens`` sent at ``now`` (not before the last one); return it."""
        self._forget(now)
        booking = Booking(max(now, self._booked[-1].at) if self._booked else now, tokens)
        self._booked.append(booking)
        self._tokens_booked += tokens
        return booking

    def settle(self, booking: Booking, difference: float) -> None:
        """Count ``difference`` more (or, < 0, fewer) tokens for ``booking``: its usage.

        Never below 0 tokens; nothing if the booking already left the log.
        """
        new = max(0.0, booking.tokens + difference)
        if any(b is booking for b in self._booked):
            self._tokens_booked += new - booking.tokens
        booking.tokens = new

    def _fits(self, requests: int, tokens_held: float, tokens: float) -> bool:
        if self.requests is not None and requests + 1 > self.requests * (1 + 1e-9):
            return False
        return self.tokens is None or tokens_held + tokens <= self.tokens * (1 + 1e-9)

    def _forget(self, now: float) -> None:
        """Drop the bookings no window from ``now`` on can count."""
        while self._booked and self._booked[0].at <= now - self.span_s:
            self._tokens_booked -= self._booked.popleft().tokens
