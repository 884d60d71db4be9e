"""The budget's rules on a fake store: TPM charged as the provider counts it, pacing that adapts.

No model and no clock: each call goes through ``charged_call`` and the rate
limiter as a budgeted chat model's request does, and the store records what
the budget asked of it.
"""

import asyncio
import logging

import httpx
import openai
import pytest
from tenacity import RetryCallState

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import RateBudget, RetryPolicy, retry_after
from lc_async_pipelines.runner.limits import budget as budget_module
from lc_async_pipelines.runner.limits._bucket import LeakyBucket
from lc_async_pipelines.runner.limits.budget import BudgetRateLimiter, CallTicket, charged_call
from lc_async_pipelines.runner.retry import is_paced, rate_limit_headers
from tests.unit.runner.limits.test_budget import FakeClock, settle


class FakeStore:
    """Records what the budget asks; reservations wait for ``gate`` when one is set."""

    def __init__(self) -> None:
        self.reserved: list[float] = []
        self.adjusted: list[float] = []
        self.paused: list[float] = []
        self.held: list[float] = []
        self.paces: list[float] = []
        self.gate: asyncio.Event | None = None

    async def connect(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def reserve(self, tokens: float) -> None:
        self.reserved.append(tokens)
        if self.gate is not None:
            await self.gate.wait()

    async def adjust(self, difference: float, booking: object = None) -> None:
        self.adjusted.append(difference)

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)

    def hold(self, seconds: float) -> None:
        self.held.append(seconds)

    def set_pace(self, pace: float) -> None:
        self.paces.append(pace)


def budget_on(store: FakeStore, **limits) -> RateBudget:
    return RateBudget(store=store, **limits)


async def call(
    budget: RateBudget,
    *,
    max_tokens: int = 512,
    used: int | None = None,
    output: int | None = None,
    headers: dict[str, str] | None = None,
    error: BaseException | None = None,
) -> CallTicket:
    """One model call as a budgeted chat model makes it: ticket, request, usage."""
    async with charged_call(budget, "hello there", max_tokens) as ticket:
        await BudgetRateLimiter(budget).aacquire()
        if error is not None:
            raise error
        ticket.used, ticket.output_tokens, ticket.headers = used, output, headers
    return ticket


def status_error(status: int, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://model/v1/chat/completions")
    response = httpx.Response(status, request=request, headers=headers)
    cls = openai.RateLimitError if status == 429 else openai.InternalServerError
    return cls("slow down", response=response, body=None)


# TPM counted as the provider counts it


async def test_max_tokens_charge_stays_as_openai_counts_it():
    store = FakeStore()
    budget = budget_on(store, tpm=60_000, tpm_charge="max_tokens")
    prompt = prompt_tokens()
    await call(budget, used=30)
    assert store.reserved == [prompt + 512]
    assert store.adjusted == []  # 30 used of 512 + prompt charged: nothing comes back
    await call(budget, used=30)
    assert store.reserved == [prompt + 512] * 2  # every call, whatever the replies used
    await call(budget, max_tokens=10, used=prompt + 25)  # used more than charged
    assert store.adjusted == [pytest.approx(15)]


def prompt_tokens() -> int:
    """Estimated tokens of the prompt every test call sends."""
    return estimate_tokens("hello there")


async def test_usage_charge_refunds_the_unused_part_and_charges_what_replies_use():
    store = FakeStore()
    budget = budget_on(store, tpm=60_000)  # tpm_charge="usage", the default
    assert budget.tpm_charge == "usage"
    prompt = prompt_tokens()
    await call(budget, used=prompt + 20)
    assert store.reserved == [prompt + 512]  # nothing known yet: max_tokens
    assert store.adjusted == [pytest.approx(-(512 - 20))]  # the unused part goes back
    for _ in range(3):
        await call(budget, used=prompt + 20)
    # then what replies use: prompt + 20 (no spread yet), not prompt + 512
    assert store.reserved[1:] == [pytest.approx(prompt + 20)] * 3
    assert len(store.adjusted) == 1  # charged exactly: nothing more to settle


async def test_usage_charge_never_exceeds_max_tokens_and_follows_longer_replies():
    store = FakeStore()
    budget = budget_on(store, tpm=60_000)
    prompt = prompt_tokens()
    await call(budget, max_tokens=100, used=prompt + 20)
    await call(budget, max_tokens=100, used=prompt + 80)  # charged 20, used 80
    assert store.adjusted[-1] == pytest.approx(60)
    await call(budget, max_tokens=30, used=prompt + 30)
    assert store.reserved[-1] == pytest.approx(prompt + 30)  # capped at max_tokens
    await call(budget, max_tokens=500, used=prompt + 30)
    assert prompt + 20 < store.reserved[-1] < prompt + 100  # mean + 2 sd of what was seen


async def test_the_first_call_calibrates_while_the_others_wait_for_its_usage():
    store = FakeStore()
    store.gate = asyncio.Event()
    budget = budget_on(store, tpm=60_000)
    prompt = prompt_tokens()
    calls = [asyncio.create_task(call(budget, used=prompt + 20)) for _ in range(3)]
    await settle()
    assert store.reserved == [prompt + 512]  # only the probe charged; the others wait
    store.gate.set()
    await asyncio.gather(*calls)
    assert store.reserved == [prompt + 512, pytest.approx(prompt + 20), pytest.approx(prompt + 20)]


async def test_a_probe_that_fails_hands_the_calibration_to_the_next_call():
    store = FakeStore()
    budget = budget_on(store, tpm=60_000)
    with pytest.raises(RuntimeError):
        await call(budget, error=RuntimeError("down"))
    await call(budget, used=prompt_tokens() + 20)  # the next probe, not a wait for ever
    assert store.reserved == [prompt_tokens() + 512] * 2


def test_tpm_charge_is_checked():
    with pytest.raises(ConfigurationError, match="tpm_charge"):
        RateBudget(tpm=1000, tpm_charge="tokens")  # type: ignore[arg-type]


async def test_the_memory_bucket_gets_the_unused_part_back():
    budget = RateBudget(tpm=60_000)  # a bucket of 990 tokens, full at the start
    clock = FakeClock(auto=True)
    store = budget.store
    store.tokens = clock.bucket(store.tokens.capacity, store.tokens.rate)
    await call(budget, max_tokens=600, used=prompt_tokens() + 5)
    assert store.tokens.level == pytest.approx(990 - 595)  # charged 600 + prompt, 5 + prompt used


# max_tokens binding the run, said once


async def test_max_tokens_binding_the_run_is_said_once_with_the_speed_a_smaller_one_gives(caplog):
    store = FakeStore()
    budget = budget_on(store, tpm=12_000, tpm_charge="max_tokens", margin=0)
    prompt = prompt_tokens()
    with caplog.at_level(logging.WARNING, logger=budget_module.__name__):
        for _ in range(budget_module.ADVICE_AFTER_CALLS - 1):
            await call(budget, used=prompt + 20, output=20)
        assert budget.max_tokens_advice is None  # not judged on a handful of calls
        for _ in range(20):
            await call(budget, used=prompt + 20, output=20)
    advice = budget.max_tokens_advice
    assert advice is not None
    assert (advice.max_tokens, advice.reply_tokens, advice.suggested_max_tokens) == (512, 20, 40)
    assert advice.calls_per_min == pytest.approx(12_000 / (prompt + 512), rel=0.01)
    assert advice.suggested_calls_per_min == pytest.approx(12_000 / (prompt + 40), rel=0.01)
    assert advice.speedup > 10
    [record] = caplog.records
    assert "max_tokens=512" in record.getMessage() and "max_tokens=40" in record.getMessage()


async def test_no_word_when_replies_need_max_tokens_or_requests_bind(caplog):
    prompt = prompt_tokens()
    with caplog.at_level(logging.WARNING, logger=budget_module.__name__):
        long_replies = budget_on(FakeStore(), tpm=12_000, tpm_charge="max_tokens")
        for _ in range(20):
            await call(long_replies, used=prompt + 300, output=300)
        rpm_binds = budget_on(FakeStore(), rpm=10, tpm=1_000_000, tpm_charge="max_tokens")
        usage = budget_on(FakeStore(), tpm=12_000)  # usage: max_tokens does not bind
        for _ in range(20):
            await call(rpm_binds, used=prompt + 20, output=20)
            await call(usage, used=prompt + 20, output=20)
    assert caplog.records == []
    assert all(b.max_tokens_advice is None for b in (long_replies, rpm_binds, usage))


# adaptive pacing


async def test_a_429_of_the_limit_pauses_and_slows_the_pace_then_clean_time_restores_it():
    store = FakeStore()
    budget = budget_on(store, rpm=600)
    spent = {"x-ratelimit-remaining-requests": "0", "retry-after-ms": "300"}
    with pytest.raises(openai.RateLimitError):
        await call(budget, error=status_error(429, spent))
    assert budget.pace == pytest.approx(0.95) and store.paces == [pytest.approx(0.95)]
    assert store.paused == [pytest.approx(0.3)] and budget.throttled == budget.rate_limited == 1
    with pytest.raises(openai.RateLimitError):  # the same window's burst: one cut
        await call(budget, error=status_error(429, spent))
    assert budget.pace == pytest.approx(0.95) and budget.rate_limited == 2
    now = asyncio.get_running_loop().time()
    budget._recover(now + 0.5)  # not a clean stretch yet
    assert budget.pace == pytest.approx(0.95)
    budget._recover(now + 3.2)  # three clean stretches: 1% of the rate back each
    assert budget.pace == pytest.approx(0.98)
    budget._recover(now + 60)
    assert budget.pace == 1.0 and store.paces[-1] == 1.0


async def test_a_429_with_room_left_in_the_limit_only_counts():
    store = FakeStore()
    budget = budget_on(store, rpm=600)
    busy = {"x-ratelimit-remaining-requests": "7", "retry-after-ms": "50"}
    with pytest.raises(openai.RateLimitError):
        await call(budget, error=status_error(429, busy))
    assert budget.throttled == 1 and budget.rate_limited == 0
    assert budget.pace == 1.0 and store.paused == [] and budget._resume_at == 0


async def test_a_429_without_headers_pauses_for_the_cooldown():
    store = FakeStore()
    budget = budget_on(store, rpm=600, cooldown_s=0.25)
    with pytest.raises(openai.RateLimitError):
        await call(budget, error=status_error(429, {}))
    assert store.paused == [0.25] and budget.pace == pytest.approx(0.95)


async def test_a_response_that_spends_the_limit_holds_new_requests_until_its_reset():
    store = FakeStore()
    budget = budget_on(store, rpm=600, tpm=60_000)
    room = {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "400ms"}
    await call(budget, used=10, headers=room)
    assert store.held == []
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "400ms"}
    before = asyncio.get_running_loop().time()
    await call(budget, used=10, headers=spent)
    assert store.held == [pytest.approx(0.4)]
    assert budget._resume_at >= before + 0.4
    few_tokens = {"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "1.5s"}
    budget._resume_at = 0
    await call(budget, used=10, headers=few_tokens)  # less than a call's charge
    assert store.held[-1] == pytest.approx(1.5)
    assert budget.throttled == 0 and budget.pace == 1.0  # no 429: no cut


async def test_a_pause_that_overtakes_a_waiting_turn_takes_a_new_one():
    store = FakeStore()
    store.gate = asyncio.Event()
    budget = budget_on(store, rpm=600)
    waiting = asyncio.create_task(call(budget))
    await settle()
    budget._hold(0.01)  # a response said the limit is spent while this one waited its turn
    store.gate.set()
    await waiting
    assert len(store.reserved) == 2 and budget.requeued == 1 and budget.requests_sent == 1


async def test_queued_time_is_recorded_on_the_ticket():
    store = FakeStore()
    store.gate = asyncio.Event()
    budget = budget_on(store, rpm=600)
    task = asyncio.create_task(call(budget))
    await settle()
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, store.gate.set)
    ticket = await task
    assert ticket.queued_s > 0 and ticket.requests == 1


# retries the budget paces


def retry_state(exc: BaseException, attempt: int = 3) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


async def test_a_retry_the_budget_paces_gets_no_backoff_of_its_own():
    policy = RetryPolicy(initial=1.0, jitter=0)
    wait = policy.wait()
    unpaced = status_error(500, {})
    assert wait(retry_state(unpaced)) == pytest.approx(4.0)
    with pytest.raises(openai.InternalServerError) as caught:
        await call(budget_on(FakeStore(), rpm=600), error=status_error(500, {}))
    assert is_paced(caught.value)
    assert wait(retry_state(caught.value)) == 0.0
    with pytest.raises(openai.InternalServerError) as asked:
        await call(
            budget_on(FakeStore(), rpm=600), error=status_error(500, {"retry-after-ms": "50"})
        )
    assert wait(retry_state(asked.value)) == pytest.approx(0.05)
    with pytest.raises(openai.InternalServerError) as no_limits:
        await call(budget_on(FakeStore(), max_in_flight=4), error=status_error(500, {}))
    assert not is_paced(no_limits.value)  # only calls whose budget spaces them


def test_rate_limit_headers_and_which_resets_mean_wait():
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-remaining-tokens": "1200",
        "x-ratelimit-reset-requests": "1m0.5s",
        "x-ratelimit-reset-tokens": "20ms",
    }
    state = rate_limit_headers(headers)
    assert (state.remaining_requests, state.remaining_tokens) == (0, 1200)
    assert (state.reset_requests_s, state.reset_tokens_s) == (60.5, 0.02)
    assert not rate_limit_headers(None).present
    # a reset counts only for a limit that is spent; Retry-After wins when sent
    assert retry_after(status_error(429, headers)) == 60.5
    room = {**headers, "x-ratelimit-remaining-requests": "4"}
    assert retry_after(status_error(429, room)) is None
    assert retry_after(status_error(429, {**headers, "retry-after-ms": "30"})) == 0.03


# the in-memory bucket: hold and a rate that changes


async def test_a_held_bucket_lets_nothing_through_then_serves_its_line_in_order():
    clock = FakeClock()
    bucket = clock.bucket(2, 10)
    done: list[str] = []

    async def take(name: str) -> None:
        await bucket.acquire()
        done.append(name)

    bucket.hold(1.0)
    assert not bucket.has_capacity(1)
    tasks = [asyncio.create_task(take(n)) for n in "ab"]
    await settle()
    await clock.advance(0.5)
    assert done == []
    await clock.advance(0.6)
    assert done == ["a", "b"]  # a bucket drained meanwhile: both fit
    await asyncio.gather(*tasks)


async def test_a_bucket_paced_slower_drains_slower_from_then_on():
    clock = FakeClock()
    bucket = clock.bucket(10, 10)
    await bucket.acquire(10)
    await clock.advance(0.5)  # 5 drained at 10/s
    bucket.rate = 2
    await clock.advance(0.5)  # 1 more at 2/s
    assert bucket.level == pytest.approx(4)
    with pytest.raises(ValueError, match="positive"):
        bucket.rate = 0


async def test_a_waiter_woken_late_does_not_let_the_next_through_at_once():
    for catch_up_s, expected in ((0.01, ["a"]), (float("inf"), ["a", "b"])):
        clock = FakeClock()
        bucket = LeakyBucket(5, 10, clock=clock.time, sleep=clock.sleep, catch_up_s=catch_up_s)
        await bucket.acquire(5)
        done: list[str] = []
        tasks = [asyncio.create_task(take(bucket, name, done)) for name in "ab"]
        await settle()
        await clock.advance(0.5)  # "a" was due at 0.1: woken 0.4 s late
        assert done == expected
        await clock.advance(1)
        await asyncio.gather(*tasks)


async def take(bucket: LeakyBucket, name: str, done: list[str]) -> None:
    await bucket.acquire(1)
    done.append(name)
