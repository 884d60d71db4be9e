import asyncio

import pytest
from langchain_core.messages import AIMessage

from lc_async_pipelines import build_map_reduce_summary_chain, build_story_chain
from lc_async_pipelines.callbacks import QueueCallbackHandler
from lc_async_pipelines.runner import Item, RateBudget, RunOptions, run_items, with_budget
from lc_async_pipelines.runner.limits import MemoryBudgetStore
from lc_async_pipelines.runner.limits._bucket import LeakyBucket
from tests.unit.fakes import ConcurrencyProbe, FnChatModel, fake_llm


def buckets(budget: RateBudget) -> MemoryBudgetStore:
    """The in-memory store of ``budget``, whose buckets the tests look at."""
    assert isinstance(budget.store, MemoryBudgetStore)
    return budget.store


async def test_in_flight_cap_holds_across_nested_map_calls():
    probe = ConcurrencyProbe("Summary.")
    llm = with_budget(FnChatModel(fn=probe), RateBudget(max_in_flight=3))
    chain = build_map_reduce_summary_chain(llm, chunk_tokens=200)
    docs = [Item(f"d{i}", i, f"Doc {i}. " + "Sentence here. " * 300) for i in range(4)]
    # 4 items x many chunks, each abatch with its own max_concurrency=4: 16 could run at once
    records = [r async for r in run_items(chain, docs, config={"max_concurrency": 4})]
    assert all(r.ok for r in records)
    assert probe.peak == 3


async def test_bound_kwargs_and_streamed_tokens_pass_through():
    queue: asyncio.Queue = asyncio.Queue()
    seen_kwargs = {}

    async def spy(messages, **kwargs):
        seen_kwargs.update(kwargs)
        return AIMessage(content="A story.")

    chain = build_story_chain(
        with_budget(FnChatModel(fn=spy), RateBudget(tpm=10_000)), max_words=50
    )
    assert await chain.ainvoke("x") == "A story."
    assert seen_kwargs["max_tokens"] > 50

    chain = build_story_chain(with_budget(fake_llm(["A story. The end."]), RateBudget()))
    out = await chain.ainvoke("x", {"callbacks": [QueueCallbackHandler(queue)]})
    assert out == "A story. The end."
    kinds = [queue.get_nowait().kind for _ in range(queue.qsize())]
    assert kinds.count("token") > 1


async def test_call_larger_than_tpm_bucket_does_not_deadlock():
    async def model(messages, **_):
        return AIMessage(content="ok.")

    # About 1,400 tokens against a bucket of 990: charged in pieces as it drains.
    llm = with_budget(FnChatModel(fn=model), RateBudget(tpm=60_000))
    result = await asyncio.wait_for(llm.ainvoke("word " * 600, max_tokens=500), timeout=30)
    assert result.content == "ok."


async def test_429_pauses_the_run_and_is_counted():
    import httpx
    import openai

    from lc_async_pipelines.runner import RetryPolicy

    request = httpx.Request("POST", "http://127.0.0.1/")
    failed = set()

    async def model(messages, **_):
        text = messages[-1].content
        if text not in failed:
            failed.add(text)
            response = httpx.Response(429, headers={"retry-after-ms": "20"}, request=request)
            raise openai.RateLimitError("slow down", response=response, body=None)
        return AIMessage(content="Fine.")

    budget = RateBudget(max_in_flight=2)
    chain = build_story_chain(with_budget(FnChatModel(fn=model), budget))
    docs = [Item(f"i{n}", n, f"topic {n}") for n in range(5)]
    fast = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.05, jitter=0.001)
    records = [r async for r in run_items(chain, docs, RunOptions(retry=fast))]
    assert all(r.ok and r.throttled == 1 and r.attempts == 2 for r in records)
    assert budget.throttled == 5


async def test_usage_below_the_estimate_is_refunded_to_the_tpm_bucket():
    async def model(messages, **_):
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return AIMessage(content="ok.", usage_metadata=usage)

    budget = RateBudget(tpm=60_000)  # a bucket of 990 tokens, full at the start
    llm = with_budget(FnChatModel(fn=model), budget)
    await llm.ainvoke("hello", max_tokens=600)
    # Charged about 600 before the call; 15 used, so about 585 came back.
    assert buckets(budget).tokens.has_capacity(500)
    assert budget.requests_sent == 1


async def test_usage_above_the_estimate_is_charged():
    async def model(messages, **_):
        usage = {"input_tokens": 10, "output_tokens": 700, "total_tokens": 710}
        return AIMessage(content="long.", usage_metadata=usage)

    budget = RateBudget(tpm=60_000)
    await with_budget(FnChatModel(fn=model), budget).ainvoke("hi", max_tokens=20)
    assert not buckets(budget).tokens.has_capacity(500)


def test_with_budget_needs_a_chat_model():
    from langchain_core.runnables import RunnableLambda

    with pytest.raises(TypeError, match="chat model"):
        with_budget(RunnableLambda(lambda x: x), RateBudget())


async def test_fallback_reuses_the_slot_of_the_failed_request():
    async def broken(messages, **_):
        raise RuntimeError("model down")

    async def works(messages, **_):
        return AIMessage(content="From the fallback.")

    llm = FnChatModel(fn=broken).with_fallbacks([FnChatModel(fn=works)])
    budget = RateBudget(max_in_flight=1)
    reply = await asyncio.wait_for(with_budget(llm, budget).ainvoke("x"), timeout=5)
    assert reply.content == "From the fallback."
    assert budget.requests_sent == 2


async def test_budget_buckets_pace_as_documented():
    budget = RateBudget(rpm=6_000, tpm=60_000)  # margin 1%
    store = buckets(budget)
    # room for one request and 4 ms of catch-up: a late request does not bunch the next
    assert store.requests.capacity == pytest.approx(1 + 0.004 * 6_000 * 0.99 / 60)
    assert store.requests.rate == pytest.approx(6_000 * 0.99 / 60)
    assert store.tokens.capacity == pytest.approx(990)  # one second of tokens
    assert store.tokens.rate == pytest.approx(990)
    await store.prime()
    assert store.requests.level == pytest.approx(1, abs=0.1)  # the next waits its turn
    assert not store.tokens.has_capacity(50)  # starts full


# The bucket itself, on a fake clock: time moves only when the test (or the
# auto-advancing sleep) moves it, so nothing here depends on the machine's speed.


class FakeClock:
    """A clock and sleep to inject into a LeakyBucket.

    auto: each sleep moves the clock on by its delay (a bucket only ever has one
    sleeper, its first waiter). Otherwise sleepers wait for advance().
    """

    def __init__(self, *, auto: bool = False) -> None:
        self.now = 0.0
        self.auto = auto
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.auto:
            self.now += delay
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in self._sleepers:
            if deadline <= self.now and not future.done():
                future.set_result(None)
        await settle()

    def bucket(self, capacity: float, rate: float) -> LeakyBucket:
        return LeakyBucket(capacity, rate, clock=self.time, sleep=self.sleep)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def start(bucket: LeakyBucket, amount: float, done: list[str], name: str) -> asyncio.Task[None]:
    async def acquire() -> None:
        await bucket.acquire(amount)
        done.append(name)

    return asyncio.create_task(acquire())


async def test_weighted_acquires_fill_the_bucket_and_it_drains_at_its_rate():
    clock = FakeClock()
    bucket = clock.bucket(10, 2)
    await bucket.acquire(3)
    await bucket.acquire(4.5)
    assert bucket.level == 7.5
    assert bucket.has_capacity(2.5) and not bucket.has_capacity(3)
    await clock.advance(1)  # 2 units drained
    assert bucket.level == 5.5
    await clock.advance(10)
    assert bucket.level == 0  # never below empty
    assert clock.sleeps == []  # nothing had to wait


async def test_amounts_outside_the_capacity_are_refused():
    bucket = FakeClock().bucket(10, 1)
    for amount in (-1, 10.5, float("nan")):
        with pytest.raises(ValueError, match="between 0 and the capacity"):
            await bucket.acquire(amount)
    with pytest.raises(ValueError, match="negative"):
        bucket.refund(-1)
    with pytest.raises(ValueError, match="positive"):
        LeakyBucket(0, 1)


async def test_room_for_two_primed_with_one_spaces_requests_evenly():
    # The RPM bucket of RateBudget: one request passes at once, then one every 1 / rate.
    clock = FakeClock(auto=True)
    bucket = clock.bucket(2, 4)
    await bucket.acquire(1)  # the priming
    sent = []
    for _ in range(5):
        await bucket.acquire()
        sent.append(clock.now)
    assert sent == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


async def test_a_full_bucket_lets_tokens_through_at_its_rate():
    # The TPM bucket of RateBudget: one second of tokens, full at the start.
    clock = FakeClock(auto=True)
    bucket = clock.bucket(100, 100)
    await bucket.acquire(100)
    await bucket.acquire(30)
    assert clock.now == pytest.approx(0.3)
    assert bucket.level == pytest.approx(100)


async def test_a_charge_larger_than_the_capacity_completes_in_pieces():
    clock = FakeClock(auto=True)
    bucket = clock.bucket(10, 10)
    await asyncio.wait_for(bucket.charge(35), timeout=5)
    # 10 at once, then 10, 10 and 5 as the bucket drains: 2.5 s of drain in all.
    assert clock.sleeps == pytest.approx([1, 1, 0.5])
    assert bucket.level == pytest.approx(10)
    await bucket.charge(0)
    await bucket.charge(-5)
    assert clock.sleeps == pytest.approx([1, 1, 0.5])


async def test_refund_wakes_a_waiter_without_the_clock_moving():
    clock = FakeClock()
    bucket = clock.bucket(100, 1)
    await bucket.acquire(100)
    done: list[str] = []
    waiter = start(bucket, 50, done, "waiter")
    await settle()
    assert done == [] and not bucket.has_capacity(0)  # queued, asleep on the fake clock
    bucket.refund(60)
    await settle()
    assert done == ["waiter"]
    await waiter
    assert bucket.level == pytest.approx(90)
    assert clock.now == 0


async def test_refund_wakes_every_waiter_it_frees_and_no_more():
    clock = FakeClock()
    bucket = clock.bucket(10, 1)
    await bucket.acquire(10)
    done: list[str] = []
    tasks = [start(bucket, 2, done, name) for name in "abc"]
    await settle()
    bucket.refund(5)  # room for two of the three
    await settle()
    assert done == ["a", "b"]
    bucket.refund(100)  # more than was charged: the bucket is only emptied
    await settle()
    assert done == ["a", "b", "c"]
    await asyncio.gather(*tasks)
    assert bucket.level == pytest.approx(2)


async def test_waiters_are_served_first_in_first_out():
    clock = FakeClock()
    bucket = clock.bucket(10, 1)
    await bucket.acquire(10)
    done: list[str] = []
    tasks = [start(bucket, 8, done, "big")]
    await settle()
    tasks += [start(bucket, 1, done, f"small{i}") for i in range(3)]
    await settle()
    bucket.refund(3)  # room for every small one, but the big one came first
    await settle()
    assert done == []
    assert not bucket.has_capacity(1)  # a newcomer queues too, however small
    await clock.advance(5)  # level 2: the big one fits, then none of the small ones
    assert done == ["big"]
    await clock.advance(3)
    assert done == ["big", "small0", "small1", "small2"]
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_leaves_the_line_and_the_next_is_served():
    clock = FakeClock()
    bucket = clock.bucket(10, 1)
    await bucket.acquire(10)
    done: list[str] = []
    first = start(bucket, 9, done, "first")
    second = start(bucket, 3, done, "second")
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    bucket.refund(3)
    await settle()
    assert done == ["second"]
    await second
    assert bucket.level == pytest.approx(10)


async def test_default_clock_and_sleep_are_the_event_loop_s():
    bucket = LeakyBucket(2, 1_000)
    await asyncio.wait_for(bucket.charge(10), timeout=5)
    assert bucket.level <= 2


async def test_a_deadline_around_the_sleeping_first_waiter_still_fires():
    clock = FakeClock()  # never advances: only the deadline or a refund can end a wait
    bucket = clock.bucket(10, 1)
    await bucket.acquire(10)

    async def with_deadline() -> None:
        async with asyncio.timeout(0.01):
            await bucket.acquire(5)

    first = asyncio.create_task(with_deadline())  # first in line, asleep on the fake clock
    await settle()
    done: list[str] = []
    second = start(bucket, 1, done, "second")
    with pytest.raises(TimeoutError):
        await first
    await settle()
    assert done == []
    bucket.refund(1)  # the timed-out acquire left the line: "second" is first now
    await settle()
    assert done == ["second"]
    await second
    assert bucket.has_capacity(0) and bucket.level == pytest.approx(10)
