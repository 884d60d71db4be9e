"""The Redis budget without a server: keys, URLs, errors, and the client's side of the scripts."""

import logging
import pickle
import socket

import pytest
import redis
from langchain_core.messages import AIMessage

from lc_async_pipelines._scrub import scrub
from lc_async_pipelines.errors import BudgetUnavailable, ConfigurationError, PipelinesError
from lc_async_pipelines.runner import RateBudget, with_budget
from lc_async_pipelines.runner.limits import _redis_scripts
from lc_async_pipelines.runner.limits.redis_budget import (
    RedisRateBudget,
    _unavailable,
    budget_key,
    open_budget,
)
from lc_async_pipelines.runner.redis_client import is_outage
from tests.unit.fakes import FnChatModel


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


# keys


def test_budget_key_depends_on_endpoint_model_and_limits_only():
    key = budget_key("https://api.example.com/v1", "gpt-4o-mini")
    assert key.startswith("lc_async_pipelines:budget:gpt-4o-mini:")
    assert key == budget_key("HTTPS://API.example.com/v1/", "gpt-4o-mini")
    # credentials and the query never change the key, nor appear in it
    assert key == budget_key("https://user:pa55word@api.example.com/v1?api_key=xyz", "gpt-4o-mini")
    assert "example" not in key and "pa55word" not in key
    others = {
        budget_key("https://api.example.com/v1", "gpt-4o"),
        budget_key("https://other.example.com/v1", "gpt-4o-mini"),
        budget_key("http://127.0.0.1:8001/v1", "gpt-4o-mini"),
        budget_key("http://127.0.0.1:8002/v1", "gpt-4o-mini"),
        budget_key(None, "gpt-4o-mini"),
    }
    assert key not in others and len(others) == 5
    assert budget_key(None, None) == budget_key("", None)
    assert budget_key("http://h/v1", "ollama/llama3.1:8b").split(":")[2] == "ollama_llama3.1_8b"


# Issue 22 point 5: a run at --rpm 600 and one at --rpm 60 on one endpoint shared a key.
@pytest.mark.parametrize(
    ("one", "other", "shared"),
    [
        ({"rpm": 600}, {"rpm": 60}, False),
        ({"rpm": 600}, {"rpm": 600.0}, True),
        ({"rpm": 600}, {"rpm": 600, "tpm": 100_000}, False),
        ({"tpm": 100_000}, {"tpm": 200_000}, False),
        ({}, {"rpm": None, "tpm": None}, True),
        ({}, {"rpm": 600}, False),
    ],
)
def test_the_default_budget_key_covers_the_run_s_limits(one, other, shared):
    endpoint = "https://api.example.com/v1"
    key = budget_key(endpoint, "gpt-4o-mini", **one)
    assert (key == budget_key(endpoint, "gpt-4o-mini", **other)) is shared
    assert key.startswith("lc_async_pipelines:budget:gpt-4o-mini:")
    budget = open_budget("redis://127.0.0.1:6379/0", base_url=endpoint, model="gpt-4o-mini", **one)
    assert budget.key == key


# URLs and limits


def test_open_budget_picks_memory_or_redis_by_url():
    memory = open_budget(None, rpm=600, max_in_flight=3)
    assert type(memory) is RateBudget and memory.rpm == 600 and memory.max_in_flight == 3
    assert type(open_budget("", rpm=600)) is RateBudget
    for url in ("redis://127.0.0.1:6379/0", "rediss://host:6380/1", "unix:///run/redis.sock"):
        shared = open_budget(url, rpm=600, tpm=10_000, base_url="http://m/v1", model="mock")
        assert isinstance(shared, RedisRateBudget) and shared.url == url
        assert shared.key == budget_key("http://m/v1", "mock", 600, 10_000)
        assert (shared.rpm, shared.tpm) == (600, 10_000)
    assert open_budget("redis://h:1/0", key="team-a").key == "team-a"


def test_other_schemes_and_bad_limits_are_configuration_errors():
    with pytest.raises(ConfigurationError, match=r"--budget 'http://\[redacted\]@h:1'"):
        open_budget("http://u:s3cretpass@h:1")
    with pytest.raises(ConfigurationError, match="--budget 'memcached://h'"):
        open_budget("memcached://h")
    with pytest.raises(ConfigurationError, match="rpm must be > 0"):
        open_budget("redis://h:1/0", rpm=-5)
    with pytest.raises(ConfigurationError, match="margin"):
        RedisRateBudget(url="redis://h:1/0", key="k", margin=1)
    with pytest.raises(ConfigurationError, match="key"):
        RedisRateBudget(url="redis://h:1/0", key=" ")
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisRateBudget(url="/tmp/redis.sock", key="k")


def test_the_password_is_never_shown_and_a_pickled_budget_arrives_unconnected():
    budget = RedisRateBudget(url="redis://:Zq9-hunter2-x@h:6379/0", key="k", rpm=600, tpm=6000)
    assert "hunter2" not in repr(budget) and "[redacted]@h:6379" in repr(budget)
    assert "rpm=600" in repr(budget)
    assert scrub("AUTH failed for Zq9-hunter2-x") == "AUTH failed for [redacted]"  # registered
    copy = pickle.loads(pickle.dumps(budget))
    assert isinstance(copy, RedisRateBudget) and copy is not budget
    assert (copy.url, copy.key, copy.rpm, copy.tpm) == (budget.url, "k", 600, 6000)
    assert not copy.connected and copy.requests_sent == 0


def test_limits_have_the_in_memory_budget_s_shape():
    budget = RedisRateBudget(url="redis://h:1/0", key="k", rpm=6_000, tpm=60_000, max_in_flight=2)
    assert budget.redis_store.interval_ms == pytest.approx(60_000 / (6_000 * 0.99))  # margin 1%
    assert budget.redis_store.tokens_per_ms == pytest.approx(
        0.99
    )  # one second's bucket: 990 tokens
    assert budget._slots is not None and budget._slots._value == 2  # per process


# errors


def test_redis_errors_map_to_one_scrubbed_line():
    url = "redis://:Zq9-hunter2-x@10.0.0.5:6379/0"
    cause = redis.ConnectionError("Error 111 connecting to 10.0.0.5:6379.\nConnection refused.")
    error = _unavailable(url, cause)
    assert isinstance(error, BudgetUnavailable | ConnectionError | PipelinesError)
    text = str(error)
    assert "\n" not in text and "hunter2" not in text
    assert text.startswith("shared budget at redis://[redacted]@10.0.0.5:6379/0 unreachable: ")
    assert text.endswith(
        "ConnectionError: Error 111 connecting to 10.0.0.5:6379. Connection refused."
    )
    leaky = _unavailable("redis://h:1/0", redis.ResponseError("NOAUTH token=abcdef123456 bad"))
    assert "abcdef123456" not in str(leaky)


def test_outages_are_told_from_refusals():
    for exc in (
        redis.ConnectionError("down"),
        redis.TimeoutError("slow"),
        redis.exceptions.BusyLoadingError("loading"),
        redis.exceptions.ReadOnlyError("replica"),
        ConnectionRefusedError(),
        TimeoutError(),
    ):
        assert is_outage(exc), exc
    for exc in (
        redis.ResponseError("WRONGTYPE"),
        redis.exceptions.NoPermissionError("no"),
        KeyError(),
    ):
        assert not is_outage(exc), exc


async def test_redis_down_at_start_is_budget_unavailable():
    port = closed_port()
    budget = open_budget(f"redis://:Zq9-hunter2-x@127.0.0.1:{port}/0", rpm=600, key="k")
    with pytest.raises(BudgetUnavailable) as caught:
        await budget.connect()
    assert f"redis://[redacted]@127.0.0.1:{port}/0 unreachable: ConnectionError" in str(
        caught.value
    )
    assert "hunter2" not in str(caught.value)
    with pytest.raises(BudgetUnavailable):
        async with budget:
            pass


async def test_a_budget_never_connected_fails_its_first_call_instead_of_waiting():
    async def model(messages, **_):
        return AIMessage(content="never")

    budget = RedisRateBudget(url=f"redis://127.0.0.1:{closed_port()}/0", key="k", rpm=600)
    with pytest.raises(BudgetUnavailable):
        await with_budget(FnChatModel(fn=model), budget).ainvoke("x")


# the client's side of the scripts, on a fake Redis


class FakeScript:
    """Answers like a script; raises the queued errors first."""

    def __init__(self, reply, errors=()):
        self.reply, self.errors, self.calls = reply, list(errors), []

    async def __call__(self, keys, args):
        self.calls.append((list(keys), list(args)))
        if self.errors:
            raise self.errors.pop(0)
        return self.reply(args) if callable(self.reply) else self.reply


class FakeClient:
    """Hands out the fake scripts where redis-py registers the real ones."""

    def __init__(self, scripts):
        self.scripts = scripts
        self.names = {
            _redis_scripts.RESERVE: "reserve",
            _redis_scripts.ADJUST: "adjust",
            _redis_scripts.PAUSE: "pause",
            _redis_scripts.PRESENCE: "presence",
        }

    def register_script(self, text):
        return self.scripts.get(self.names[text])

    async def aclose(self):
        pass


def connected(budget: RedisRateBudget, **scripts: FakeScript) -> RedisRateBudget:
    budget.redis_store.attach(FakeClient(scripts))
    return budget


async def test_reservations_carry_the_charge_and_the_floors_the_client_saw():
    reserve = FakeScript([0, b"1000.500", b"2000.250"])
    adjust = FakeScript(b"0")
    budget = connected(
        RedisRateBudget(url="redis://h:1/0", key="team", rpm=600, tpm=60_000),
        reserve=reserve,
        adjust=adjust,
    )

    async def model(messages, **_):
        return AIMessage(
            content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 7, "total_tokens": 10}
        )

    llm = with_budget(FnChatModel(fn=model), budget)
    await llm.ainvoke("hello", max_tokens=100)
    await llm.ainvoke("hello", max_tokens=100)
    (keys, first), (_, second) = reserve.calls
    assert keys[:4] == ["{team}:rpm", "{team}:tpm", "{team}:pause", "{team}:latest"]
    assert keys[4:] == ["{team}:window", "{team}:window_tokens", "{team}:bookings"]
    assert first[9:12] == [0, 1000, pytest.approx(1020)]  # a window's limits, its span in ms
    assert first[0] == pytest.approx(60_000 / 594)  # ms between requests
    assert first[2] == pytest.approx(102)  # estimate: 2 prompt tokens + max_tokens
    # tpm_charge="usage": the second is charged what the first used, 2 + 8 tokens
    assert second[2] == pytest.approx(10)
    assert first[5:7] == [0.0, 0.0] and second[5:7] == [1000.5, 2000.25]
    # usage 10 against 102 charged: 92 refunded; nothing to settle after the second
    assert [args[0] for _, args in adjust.calls] == [pytest.approx(-92)]
    assert budget.requests_sent == 2 and budget.round_trips == 3


async def test_an_outage_waits_warns_once_and_resumes(caplog):
    down = [redis.ConnectionError("Connection refused")] * 3
    reserve = FakeScript([0, b"0", b"0"], errors=down)
    budget = connected(
        RedisRateBudget(url="redis://:Zq9-hunter2-x@h:1/0", key="k", rpm=600), reserve=reserve
    )

    async def model(messages, **_):
        return AIMessage(content="made it")

    with caplog.at_level(logging.WARNING, logger="lc_async_pipelines.runner.limits.redis_budget"):
        reply = await with_budget(FnChatModel(fn=model), budget).ainvoke("x")
    assert reply.content == "made it"
    assert len(reserve.calls) == 4 and budget.round_trips == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # one when it went, one when it came back
    assert "unreachable" in messages[0] and "never unlimited" in messages[0]
    assert "is back after" in messages[1]
    assert all("hunter2" not in m for m in messages)


async def test_a_refused_script_is_budget_unavailable_not_a_wait():
    reserve = FakeScript([0, b"0", b"0"], errors=[redis.ResponseError("WRONGTYPE")])
    budget = connected(RedisRateBudget(url="redis://h:1/0", key="k", rpm=600), reserve=reserve)

    async def model(messages, **_):
        return AIMessage(content="never")

    with pytest.raises(BudgetUnavailable, match="ResponseError: WRONGTYPE"):
        await with_budget(FnChatModel(fn=model), budget).ainvoke("x")
    assert len(reserve.calls) == 1


async def test_usage_a_lost_settle_could_not_charge_goes_with_the_next_reservation():
    reserve = FakeScript([0, b"0", b"0"])
    adjust = FakeScript(b"0", errors=[redis.ConnectionError("gone")])
    budget = connected(
        RedisRateBudget(url="redis://h:1/0", key="k", tpm=60_000), reserve=reserve, adjust=adjust
    )

    async def model(messages, **_):
        return AIMessage(
            content="long",
            usage_metadata={"input_tokens": 2, "output_tokens": 500, "total_tokens": 502},
        )

    llm = with_budget(FnChatModel(fn=model), budget)
    await llm.ainvoke("hi", max_tokens=100)  # 101 charged, 502 used: 401 owed, the settle fails
    await llm.ainvoke("hi", max_tokens=100)
    charges = [args[2] for _, args in reserve.calls]
    assert charges == [pytest.approx(101), pytest.approx(101 + 401)]
    assert budget.redis_store.owed_tokens == 0


async def test_a_429_pauses_this_process_at_once_and_is_shared():
    pause = FakeScript(b"0")
    budget = connected(RedisRateBudget(url="redis://h:1/0", key="k", cooldown_s=0.01), pause=pause)
    budget.cool_down(None)
    assert budget.throttled == 1 and budget._resume_at > 0
    await budget.aclose()  # waits for (or drops) the notice
    budget = connected(RedisRateBudget(url="redis://h:1/0", key="k"), pause=pause)
    budget.cool_down(2.5)
    await budget.redis_store.wait_for_pauses()
    assert pause.calls[-1] == (["{k}:pause"], [2500.0, 0])


async def test_a_charge_is_capped_at_a_minute_s_tokens_as_in_memory():
    reserve = FakeScript([0, b"0", b"0"])
    budget = connected(
        RedisRateBudget(url="redis://h:1/0", key="k", tpm=600),
        reserve=reserve,
        adjust=FakeScript(b"0"),
    )

    async def model(messages, **_):
        return AIMessage(content="ok")

    await with_budget(FnChatModel(fn=model), budget).ainvoke("hi", max_tokens=5_000)
    assert reserve.calls[0][1][2] == pytest.approx(594)  # 600 tokens a minute, margin 1%
