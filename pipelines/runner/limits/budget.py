"""One budget shared by all model calls of a run: requests and tokens per minute, calls in flight.

LangChain's ``max_concurrency`` is a fresh semaphore per ``abatch`` call, so
nested calls (the map step of map-reduce under a concurrent runner) multiply
it. The budget sits on the chat model instead, so every call, however deeply
nested, draws from the same limits.

The budget is plugged into the model's ``rate_limiter`` slot, which
langchain-core checks only after a cache miss (``BaseChatModel._agenerate_with_cache``),
so calls answered by the LLM cache cost nothing. Its rates are metered by a
store (:mod:`lc_async_pipelines.runner.limits.store`); the budget keeps what is
local to a process: calls in flight and its pause after a 429.
:func:`charged_call` carries one call's token estimate to the rate limiter.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Self

from langchain_core.language_models import LanguageModelInput
from langchain_core.prompt_values import PromptValue
from langchain_core.rate_limiters import BaseRateLimiter

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.limits.flex import is_flex_unavailable
from lc_async_pipelines.runner.limits.replies import MaxTokensAdvice, Replies
from lc_async_pipelines.runner.limits.store import BudgetRates, BudgetStore, MemoryBudgetStore
from lc_async_pipelines.runner.retry import (
    is_rate_limit,
    mark_paced,
    rate_limit_headers,
    response_headers,
    retry_after,
)
from lc_async_pipelines.telemetry import current as current_telemetry

__all__ = [
    "BudgetRateLimiter",
    "CallTicket",
    "MaxTokensAdvice",
    "RateBudget",
    "TpmCharge",
    "charged_call",
    "check_limits",
]

log = logging.getLogger(__name__)

TpmCharge = Literal["max_tokens", "usage"]
"""How the endpoint counts a call toward TPM: see :attr:`RateBudget.tpm_charge`."""

# Adaptive pacing: additive increase, multiplicative decrease (AIMD), the rule
# of TCP's congestion control (RFC 5681, §3.1), on the rate the budget paces
# at. A 429 of the limit cuts the pace to PACE_DECREASE of itself (once per
# CLEAN_STRETCH_S, so a burst of 429s from one window is one cut); every
# CLEAN_STRETCH_S with none gives PACE_INCREASE back, up to the full rate.
PACE_DECREASE = 0.95
PACE_INCREASE = 0.01
PACE_FLOOR = 0.25
CLEAN_STRETCH_S = 1.0
# How long calls wait for the first reply's usage before they charge max_tokens.
PROBE_WAIT_S = 5.0
# Calls settled before the budget judges whether max_tokens binds the run.
ADVICE_AFTER_CALLS = 8
# A wait shorter than this held nothing (RateBudget.held_by None): the loop's own work.
HELD_MIN_S = 0.001


@dataclass
class CallTicket:
    """What one budgeted call has taken from the budget so far (see :func:`charged_call`).

    Attributes:
        estimate: its up-front token estimate, prompt + ``max_tokens``.
        prompt_tokens: its prompt's estimated tokens.
        max_tokens: its ``max_tokens`` (0: unknown, ``estimate`` is all there is).
        slot: whether it holds one of the budget's ``max_in_flight`` slots.
        charged: tokens charged for its latest request.
        requests: requests it sent through the budget.
        used: total tokens the call used, as the server reported (set by the
            caller before the ``charged_call`` block ends).
        output_tokens: its reply's tokens, if the caller knows them apart (else
            the budget takes ``used`` less the prompt's estimate).
        headers: the call's HTTP response headers, set by the caller (from
            ``response_metadata["headers"]``, which ChatOpenAI fills with
            ``include_response_headers=True``); the budget follows their
            ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*``.
        queued_s: seconds the call waited for the budget (a 429's pause,
            a slot, its turn in the rates), summed over its requests.
        last_wait_s: seconds its latest request waited for the budget.
        marks: when its latest request's wait began and each of its stages
            ended (event loop seconds), for :meth:`RateBudget.held_by`.
        queue_depth: requests already waiting for the budget when its latest one arrived.
        booking: its latest request's booking in the store, settled with its usage.
    """

    estimate: int
    prompt_tokens: int = 0
    max_tokens: int = 0
    slot: bool = False
    charged: float = 0.0
    requests: int = 0
    used: int | None = None
    output_tokens: int | None = None
    headers: Mapping[str, str] | None = None
    queued_s: float = 0.0
    last_wait_s: float = 0.0
    marks: tuple[float, ...] = ()
    queue_depth: int = 0
    booking: object = field(default=None, repr=False)
    probe: bool = field(default=False, repr=False)


_TICKET: ContextVar[CallTicket | None] = ContextVar("pipelines_budget_ticket", default=None)


def _prompt_text(value: LanguageModelInput) -> str:
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, str):
        return value
    return " ".join(str(getattr(m, "content", m)) for m in value)


@dataclass
class RateBudget:
    """Limits shared by all model calls of a run.

    Args:
        rpm: requests per minute (None: unlimited). Requests are spaced evenly,
            ``60 / rpm`` seconds apart, with no burst at the start.
        tpm: tokens per minute, input + output (None: unlimited), spent evenly:
            the bucket holds one second of tokens and starts full, so there is
            no burst at the start. A call is charged before it is sent (at
            most a minute's tokens), in pieces no larger than the bucket, so
            no call deadlocks, however large; once the server reports its
            usage, the charge is settled as ``tpm_charge`` says.
        max_in_flight: model calls in flight at once, across the whole run.
        default_max_tokens: the output charge of a call when neither the call
            nor the model sets ``max_tokens``.
        cooldown_s: pause of the whole run after a 429 without ``Retry-After``.
        margin: fraction of ``rpm`` and ``tpm`` left unused (0.01: aim at 99%).
            Sent at exactly the limit, requests reach a provider's fixed-window
            counter with network jitter, and a few land in a window already full.
        tpm_charge: how the endpoint counts a call toward ``tpm``, so the
            budget counts it the same way:

            - ``"max_tokens"``: the prompt plus the whole ``max_tokens``, when
              the call is admitted, whatever the reply uses. OpenAI: "your
              rate limit is calculated as the maximum of max_tokens and the
              estimated number of tokens based on the character count of your
              request" (https://platform.openai.com/docs/guides/rate-limits);
              Azure OpenAI likewise. The up-front charge stays (a call that
              used more is charged the difference), and when replies use
              under a quarter of ``max_tokens`` the budget says so once
              (:attr:`max_tokens_advice`, a warning on this module's logger).
            - ``"usage"`` (the default): what the call used. Anthropic
              estimates output from ``max_tokens`` and "adjusts ... to reflect
              the actual number of output tokens used"
              (https://docs.anthropic.com/en/api/rate-limits); a self-hosted
              OpenAI-compatible server (vLLM, llama-server, a proxy such as
              LiteLLM) counts what it generated, if it limits at all. A call
              is charged its prompt and the output the replies so far make
              likely (their mean + 2 standard deviations, at most
              ``max_tokens``; the first call charges ``max_tokens`` while the
              others wait for its usage, at most 5 s), and settled to its
              usage after: the unused part goes back to the bucket.

            The default is ``"usage"``: it was this budget's only rule before
            (a charge settled to usage), and the session sets
            ``"max_tokens"`` from the endpoint where the provider counts that
            way; a budget left on ``"usage"`` against OpenAI over-sends only
            when replies are much shorter than ``max_tokens``, and its 429s
            then slow it down (see below).
        store: where the rates are metered (None: in this process, a
            :class:`~lc_async_pipelines.runner.limits.store.MemoryBudgetStore`
            of these limits); set once the budget is built.

    Pacing adapts to what the provider says. A 429 of the limit (no
    ``x-ratelimit-remaining-*`` headers, or one at 0) holds every call of the
    run for the provider's ``Retry-After`` (:meth:`cool_down`) and cuts the
    pace by 5% (:attr:`pace`; at most one cut a second); each clean second
    after gives 1% back, up to the full rate (AIMD, as TCP does, RFC 5681).
    A 429 whose headers show room left (a busy server) is counted, and only
    its call waits its ``Retry-After``. A response whose
    ``x-ratelimit-remaining-requests`` is 0, or whose
    ``x-ratelimit-remaining-tokens`` is below a call's charge, holds new
    requests until its ``x-ratelimit-reset-*``. A failed call's retry is
    not held behind a backoff: the budget paces it (see
    :class:`~lc_async_pipelines.runner.RetryPolicy`).

    The rates are metered by a :class:`~lc_async_pipelines.runner.limits.store.BudgetStore`:
    in this process by default (:class:`~lc_async_pipelines.runner.limits.store.MemoryBudgetStore`).
    To share them between processes or machines, use
    :class:`~lc_async_pipelines.runner.limits.redis_budget.RedisRateBudget`
    (same arguments, plus a Redis URL and key), or ``open_budget(url, ...)``,
    which picks either. Both work as async context managers (``async with
    budget:`` connects and closes; nothing to do in memory), so callers can
    treat them alike.

    Attributes:
        requests_sent: requests that passed the budget (cache hits never do).
        throttled: 429s seen.
        rate_limited: 429s of the limit (those that paused the run and cut the pace).
        requeued: requests that slept on a turn a pause then overtook, and took a new one.
        held: responses that said a limit is spent, holding new requests until it resets.
        waiting: requests waiting for the budget now.
        max_tokens_advice: set (once) when ``max_tokens`` binds the run's TPM
            rather than the replies; None otherwise.
    """

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int | None = None
    default_max_tokens: int = 512
    cooldown_s: float = 1.0
    margin: float = 0.01
    tpm_charge: TpmCharge = "usage"
    store: BudgetStore | None = field(default=None, kw_only=True, repr=False, compare=False)
    requests_sent: int = field(init=False, default=0)
    throttled: int = field(init=False, default=0)
    rate_limited: int = field(init=False, default=0)
    requeued: int = field(init=False, default=0)
    held: int = field(init=False, default=0)
    waiting: int = field(init=False, default=0)
    max_tokens_advice: MaxTokensAdvice | None = field(init=False, default=None)
    _resume_at: float = field(init=False, default=0.0)
    _slots: asyncio.Semaphore | None = field(init=False, default=None)
    _pace: float = field(init=False, default=1.0)
    _paced_at: float = field(init=False, default=0.0)
    _replies: Replies = field(init=False, default_factory=Replies, repr=False, compare=False)
    _probe: asyncio.Event | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_limits(self)
        if self.store is None:
            self.store = MemoryBudgetStore(self.rates)
        if self.max_in_flight:
            self._slots = asyncio.Semaphore(self.max_in_flight)

    @property
    def rates(self) -> BudgetRates:
        """The rates the store meters: ``rpm`` and ``tpm`` less the margin."""
        return BudgetRates.of(self.rpm, self.tpm, self.margin)

    @property
    def paces(self) -> bool:
        """True when the budget spaces requests (``rpm`` or ``tpm`` set)."""
        return bool(self.rpm or self.tpm)

    @property
    def pace(self) -> float:
        """The share of :attr:`rates` the budget paces at now: 1.0, less after 429s of the limit."""
        return self._pace

    def _store(self) -> BudgetStore:
        if self.store is None:  # pragma: no cover - set by __post_init__
            raise AssertionError("a RateBudget has a store once built")
        return self.store

    async def connect(self) -> None:
        """Get ready for calls: connect the store (nothing to do in memory)."""
        await self._store().connect()

    async def aclose(self) -> None:
        """Release what :meth:`connect` took (nothing in memory)."""
        await self._store().aclose()

    async def __aenter__(self) -> Self:
        """Connect (:meth:`connect`) and return the budget."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close (:meth:`aclose`)."""
        await self.aclose()

    def cool_down(self, seconds: float | None) -> None:
        """Hold every new request of the run for ``seconds`` (default ``cooldown_s``).

        This process pauses at once; the store tells the others sharing it
        (a Redis store sends the pause in a task: if Redis is down then, only
        this process pauses).
        """
        self.throttled += 1
        loop = asyncio.get_running_loop()
        wait = self.cooldown_s if seconds is None else seconds
        self._resume_at = max(self._resume_at, loop.time() + wait)
        self._store().pause(wait)

    def _hold(self, seconds: float) -> None:
        """Hold this process's new requests for ``seconds`` (a limit spent, as its headers say)."""
        loop = asyncio.get_running_loop()
        self.held += 1
        self._resume_at = max(self._resume_at, loop.time() + seconds)
        self._store().hold(seconds)

    def _slow_down(self) -> None:
        """Cut the pace after a 429 of the limit: at most once per clean stretch."""
        now = asyncio.get_running_loop().time()
        self.rate_limited += 1
        if self._pace < 1.0 and now - self._paced_at < CLEAN_STRETCH_S:
            return  # the same burst of 429s: one cut
        self._pace = max(PACE_FLOOR, self._pace * PACE_DECREASE)
        self._paced_at = now
        self._store().set_pace(self._pace)

    def _recover(self, now: float) -> None:
        """Give back PACE_INCREASE of the pace per clean stretch since the last change."""
        if self._pace >= 1.0 or (stretches := int((now - self._paced_at) / CLEAN_STRETCH_S)) < 1:
            return
        self._pace = min(1.0, self._pace + stretches * PACE_INCREASE)
        self._paced_at += stretches * CLEAN_STRETCH_S
        self._store().set_pace(self._pace)

    def _rate_limited(self, exc: BaseException, ticket: CallTicket) -> float | None:
        """Answer a 429: a limit spent pauses the run and slows it; a busy server only counts.

        Returns the seconds the run is paused from now, None when it is not.
        """
        state = rate_limit_headers(response_headers(exc))
        need = max(ticket.charged or float(ticket.estimate), 1.0)
        spent = (
            not state.present
            or (state.remaining_requests is not None and state.remaining_requests < 1)
            or (state.remaining_tokens is not None and state.remaining_tokens < need)
        )
        if not spent:
            self.throttled += 1  # the limit has room: the call's own retry waits its Retry-After
            return None
        self.cool_down(retry_after(exc))
        self._slow_down()
        return max(0.0, self._resume_at - asyncio.get_running_loop().time())

    def _follow_headers(self, headers: Mapping[str, str], ticket: CallTicket) -> None:
        """Hold new requests until a limit the response says is spent resets."""
        state = rate_limit_headers(headers)
        waits = [0.0]
        if state.remaining_requests is not None and state.remaining_requests < 1:
            waits.append(state.reset_requests_s or 0.0)
        need = max(ticket.charged or float(ticket.estimate), 1.0)
        if state.remaining_tokens is not None and state.remaining_tokens < need:
            waits.append(state.reset_tokens_s or 0.0)
        if max(waits) > 0:
            self._hold(max(waits))

    async def _acquire(self, ticket: CallTicket) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        ticket.queue_depth = self.waiting
        self.waiting += 1
        try:
            charge = await self._charge(ticket) if self.tpm else 0.0
            charged = loop.time()
            # A loop, not one sleep: another 429 may push the deadline while we wait.
            while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            resumed = loop.time()
            if self._slots is not None and not ticket.slot:
                # A fallback's second request reuses the slot: taking two could deadlock.
                await self._slots.acquire()
                ticket.slot = True
            slotted = loop.time()
            ticket.charged = charge
            ticket.booking = await self._reserve(charge)
            ticket.marks = (began, charged, resumed, slotted, loop.time())
        except BaseException:
            self._release_probe(ticket)
            raise
        finally:
            self.waiting -= 1
            ticket.last_wait_s = loop.time() - began
            ticket.queued_s += ticket.last_wait_s
        ticket.requests += 1
        self.requests_sent += 1

    def held_by(self, ticket: CallTicket) -> str | None:
        """What held ``ticket``'s latest request longest, or None (a wait under 1 ms).

        ``"pause"`` (a 429's, or a limit the response headers said is spent),
        ``"in_flight"`` (``max_in_flight``), ``"tpm"`` (waiting for the first
        reply's usage, or the tokens' turn), ``"rpm"``, or ``"rate"`` (both
        rates set, metered together). Worked out only when asked (telemetry).
        """
        if len(ticket.marks) != 5:
            return None
        rate = "rate" if self.rpm and self.tpm else "tpm" if self.tpm else "rpm"
        stages = ("tpm", "pause", "in_flight", rate)
        waits = zip(stages, itertools.pairwise(ticket.marks), strict=True)
        name, (start, end) = max(waits, key=lambda wait: wait[1][1] - wait[1][0])
        return name if end - start >= HELD_MIN_S else None

    async def _reserve(self, charge: float) -> object:
        """Take a turn in the store (return its booking); a new one if a pause overtook it."""
        loop = asyncio.get_running_loop()
        while True:
            while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            self._recover(loop.time())
            booking = await self._store().reserve(charge)
            if self._resume_at <= loop.time():
                return booking
            self.requeued += 1  # sent now, it would reach a limit the provider says is spent

    async def _charge(self, ticket: CallTicket) -> float:
        """Tokens to charge before the call is sent, as the endpoint counts them."""
        tpm = self.tpm or 0.0
        charge = float(ticket.estimate)
        if self.tpm_charge == "usage" and ticket.max_tokens:
            rest = await self._likely_rest(ticket)
            if rest is not None:
                charge = min(charge, ticket.prompt_tokens + rest)
        # Capped at a minute's tokens: a bigger request could never fit any
        # provider minute, and should fail there rather than wait here for ever.
        return min(charge, tpm * (1.0 - self.margin))

    async def _likely_rest(self, ticket: CallTicket) -> float | None:
        """What a call will likely use beyond its prompt; None: charge ``max_tokens``.

        Until a reply has been settled, one call (the probe) goes with the full
        charge and the others wait for its usage, at most ``PROBE_WAIT_S``.
        """
        while self._replies.rest is None:
            if ticket.probe:
                return None
            if self._probe is None:
                self._probe = asyncio.Event()
                ticket.probe = True
                return None
            try:
                await asyncio.wait_for(self._probe.wait(), PROBE_WAIT_S)
            except TimeoutError:
                return None
        return self._replies.rest

    def _release_probe(self, ticket: CallTicket) -> None:
        if not ticket.probe:
            return
        ticket.probe = False
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.set()

    async def _settle(self, ticket: CallTicket, used_tokens: int | None) -> None:
        if ticket.slot and self._slots is not None:
            ticket.slot = False
            self._slots.release()
        difference = 0.0
        try:
            if ticket.headers:
                self._follow_headers(ticket.headers, ticket)
            if self.tpm and ticket.requests and used_tokens is not None:
                difference = self._learn(ticket, used_tokens)
        finally:
            self._release_probe(ticket)
        if difference:
            await self._store().adjust(difference, ticket.booking)

    def _learn(self, ticket: CallTicket, used: int) -> float:
        """Note what the call used; return the tokens to charge (> 0) or refund (< 0) now."""
        rest = max(0.0, used - ticket.prompt_tokens)
        output = ticket.output_tokens if ticket.output_tokens is not None else round(rest)
        self._replies.add(rest, output, float(ticket.prompt_tokens))
        if self.tpm_charge == "usage":
            return used - ticket.charged
        self._judge_max_tokens(ticket)
        return max(0.0, used - ticket.charged)  # the endpoint keeps the up-front charge

    def _judge_max_tokens(self, ticket: CallTicket) -> None:
        """Say once when ``max_tokens``, not the replies, binds the run's TPM."""
        replies, max_tokens = self._replies, ticket.max_tokens
        if self.max_tokens_advice is not None or not self.tpm or replies.count < ADVICE_AFTER_CALLS:
            return
        if not max_tokens or replies.output_mean >= max_tokens / 4:
            return
        share = 1.0 - self.margin
        tpm, rpm = self.tpm * share, self.rpm * share if self.rpm else math.inf
        per_min = min(rpm, tpm / (replies.prompt_mean + max_tokens))
        suggested = max(1, 2 * replies.output_max)
        if per_min >= rpm or suggested >= max_tokens:
            return  # the requests limit binds, or the replies need most of max_tokens
        advice = MaxTokensAdvice(
            max_tokens=max_tokens,
            reply_tokens=round(replies.output_mean, 1),
            largest_reply_tokens=replies.output_max,
            calls_per_min=round(per_min, 1),
            suggested_max_tokens=suggested,
            suggested_calls_per_min=round(min(rpm, tpm / (replies.prompt_mean + suggested)), 1),
        )
        self.max_tokens_advice = advice
        log.warning(
            "max_tokens=%d binds this run's tokens per minute, not the replies (%.0f tokens on "
            "average, %d at most): the endpoint counts max_tokens when it admits a call, so "
            "%.0f calls a minute fit tpm=%g; max_tokens=%d would allow %.0f (%.1fx)",
            max_tokens,
            advice.reply_tokens,
            advice.largest_reply_tokens,
            advice.calls_per_min,
            self.tpm,
            suggested,
            advice.suggested_calls_per_min,
            advice.speedup,
        )


def check_limits(budget: RateBudget) -> None:
    """Raise :class:`ConfigurationError` naming the first of ``budget``'s limits out of range."""
    check_number("rpm", budget.rpm, minimum=0, strict=True)
    check_number("tpm", budget.tpm, minimum=0, strict=True)
    check_number("max_in_flight", budget.max_in_flight, minimum=1, whole=True)
    check_number("cooldown_s", budget.cooldown_s, minimum=0)
    check_number("default_max_tokens", budget.default_max_tokens, minimum=1, whole=True)
    if not 0 <= budget.margin < 1:
        msg = f"margin must be in [0, 1), got {budget.margin}"
        raise ConfigurationError(msg)
    if budget.tpm_charge not in ("max_tokens", "usage"):
        msg = f"tpm_charge must be 'max_tokens' or 'usage', got {budget.tpm_charge!r}"
        raise ConfigurationError(msg)


class BudgetRateLimiter(BaseRateLimiter):
    """langchain-core's rate-limiter interface over a :class:`RateBudget`.

    Set by :func:`with_budget` on the chat model, where langchain-core calls
    :meth:`aacquire` right before each request and never on a cache hit. Only
    the async path is supported: the budget's limits live on the event loop.
    """

    def __init__(self, budget: RateBudget) -> None:
        """Draw from ``budget``."""
        self.budget = budget

    def acquire(self, *, blocking: bool = True) -> bool:
        """Refuse: a budget is shared on an event loop (use ``ainvoke``)."""
        msg = "a RateBudget is async-only: call the chain with ainvoke/abatch/astream"
        raise RuntimeError(msg)

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Wait until the budget has room for the current call; return True."""
        ticket = _TICKET.get()
        if ticket is None:  # a call that did not come through with_budget's wrapper
            ticket = CallTicket(estimate=self.budget.default_max_tokens)
        await self.budget._acquire(ticket)
        if ticket is not _TICKET.get():
            await self.budget._settle(ticket, None)
        return True


@asynccontextmanager
async def charged_call(
    budget: RateBudget, value: LanguageModelInput, max_tokens: int
) -> AsyncIterator[CallTicket]:
    """Carry one call's token estimate to the rate limiter; settle with its usage after.

    Before leaving the block, set ``ticket.used`` to the call's total tokens
    and, when known, ``ticket.headers`` to its HTTP response headers (and
    ``ticket.output_tokens`` to its reply's tokens). ``ticket.queued_s`` is the
    time the call waited for the budget. A 429 raised inside pauses the budget
    for its ``Retry-After`` when the headers of its response
    (``openai.RateLimitError.response.headers``) show the limit spent (a flex
    request's capacity 429 does not:
    :func:`~lc_async_pipelines.runner.limits.flex.is_flex_unavailable`); any
    error raised inside a budget that paces is marked so that its retry adds
    no backoff of its own (:func:`~lc_async_pipelines.runner.retry.mark_paced`).
    """
    prompt = estimate_tokens(_prompt_text(value))
    ticket = CallTicket(estimate=prompt + max_tokens, prompt_tokens=prompt, max_tokens=max_tokens)
    reset = _TICKET.set(ticket)
    try:
        yield ticket
    except Exception as exc:
        if budget.paces:
            mark_paced(exc)
        # flex capacity refused: not the account's limit, so the run is not paused
        if is_rate_limit(exc) and not is_flex_unavailable(exc):
            paused = budget._rate_limited(exc, ticket)
            if (tel := current_telemetry()) is not None:
                tel.rate_limited(exc, paused)
        raise
    finally:
        try:
            _TICKET.reset(reset)
        except ValueError:  # left in another context (an async generator's): clear it there
            _TICKET.set(None)
        await budget._settle(ticket, ticket.used)
