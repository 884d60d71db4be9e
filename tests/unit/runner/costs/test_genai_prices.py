"""Prices from genai-prices' bundled data: OpenAI and Anthropic, cached tokens, tiers, offline.

The expected figures are the providers' published prices per million tokens
(https://openai.com/api/pricing/, https://docs.anthropic.com/en/docs/about-claude/pricing),
worked out by hand, not read back from genai-prices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from uuid import uuid4

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from lc_async_pipelines.runner.costs import CostMeter, load_prices, tier_of, usage_cost

M = 1_000_000


@pytest.fixture(scope="module")
def table():
    return load_prices()


def test_openai_input_cached_input_and_output_are_priced_apart(table):
    price = table.price_of("gpt-4o-mini")  # $0.15 in, $0.075 cached, $0.60 out
    usage = {"input_tokens": M, "output_tokens": M // 2,
             "input_token_details": {"cache_read": 400_000}}  # fmt: skip
    assert usage_cost(price, usage) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.6)
    # Batch API: $0.075 in, $0.30 out
    assert usage_cost(price, {"input_tokens": M, "output_tokens": M}, batch=True) == (
        pytest.approx(0.075 + 0.3)
    )


def test_a_flex_reply_of_langchain_openai_is_priced_at_flex_rates_with_its_cached_tokens(table):
    price = table.price_of("gpt-5-mini")  # flex: $0.125 in, $0.0125 cached, $1 out
    # langchain-openai names a flex reply's cached tokens flex_cache_read (_create_usage_metadata)
    usage = {"input_tokens": M, "output_tokens": M,
             "input_token_details": {"flex_cache_read": 200_000, "flex": 800_000}}  # fmt: skip
    assert tier_of({"service_tier": "flex"}) == "flex"
    assert usage_cost(price, usage, tier="flex") == pytest.approx(0.8 * 0.125 + 0.2 * 0.0125 + 1)
    assert usage_cost(price, usage) == pytest.approx(0.8 * 0.25 + 0.2 * 0.025 + 2)


def test_anthropic_cache_reads_and_writes_are_priced_apart(table):
    price = table.price_of("claude-haiku-4-5")  # $1 in, $0.10 read, $1.25 write, $5 out
    assert price == table.price_of("anthropic:claude-haiku-4-5")
    usage = {"input_tokens": M, "output_tokens": 200_000,
             "input_token_details": {"cache_read": 300_000, "cache_creation": 100_000}}  # fmt: skip
    expected = 0.6 * 1 + 0.3 * 0.1 + 0.1 * 1.25 + 0.2 * 5
    assert usage_cost(price, usage) == pytest.approx(expected)
    # Message Batches: half of each (genai-prices' batch rates)
    assert usage_cost(price, usage, batch=True) == pytest.approx(expected / 2)


def test_without_a_batch_rate_the_providers_documented_discount_applies(table):
    price = table.price_of("claude-3-5-haiku-latest")  # no batch rate in genai-prices
    usage = {"input_tokens": M, "output_tokens": M}
    assert usage_cost(price, usage) == pytest.approx(0.8 + 4)
    assert usage_cost(price, usage, batch=True) == pytest.approx((0.8 + 4) / 2)
    assert "batch-processing: 50% off" in price.source


def test_an_unknown_model_is_unpriced_not_free(table):
    assert table.price_of("my-own-llm") is None
    assert table.price_of("llama3.1:8b") is None  # an Ollama tag, not a provider prefix
    meter = CostMeter(table, model="my-own-llm", warn_unpriced=False)
    handler = meter.item("a")
    run_id = uuid4()
    handler.on_chat_model_start({}, [[]], run_id=run_id, metadata={"ls_model_name": "my-own-llm"})
    reply = AIMessage(content="x", usage_metadata={"input_tokens": 9, "output_tokens": 9,
                                                   "total_tokens": 18})  # fmt: skip
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]), run_id=run_id)
    assert handler.cost_usd is None and meter.unpriced == {"my-own-llm"}


def test_a_prices_file_still_wins_over_genai_prices(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"models": {"gpt-4o-mini": {"input": 1, "output": 2}}}))
    price = load_prices(path).price_of("gpt-4o-mini")
    assert price.catalog is None and price.rates("flex") == (1, 1, 1, 2)


_OFFLINE = """
import socket, threading
def refuse(*args, **kwargs):
    raise OSError("network use refused by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse
import genai_prices
from lc_async_pipelines.runner.costs import load_prices, usage_cost
table = load_prices()
cost = usage_cost(table.price_of("claude-haiku-4-5"), {"input_tokens": 1000, "output_tokens": 1000})
calc = genai_prices.calc_price(genai_prices.Usage(input_tokens=1), "gpt-4o-mini")
print(repr(cost), calc.auto_update_timestamp, [t.name for t in threading.enumerate()])
"""


def test_prices_are_read_offline_from_the_bundled_data():
    # a fresh interpreter whose sockets refuse: any download would fail the pricing
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    cost, stamp, threads = done.stdout.strip().split(" ", 2)
    assert float(cost) == pytest.approx((1000 * 1 + 1000 * 5) / M)
    assert stamp == "None"  # genai-prices' mark of its bundled data (no auto-update)
    assert threads == "['MainThread']"  # no UpdatePrices thread started


def test_a_long_context_model_is_described_at_its_base_tier_and_a_long_call_above_it(table):
    # Claude Sonnet 4.5: $3 in, $0.30 cached, $3.75 write, $15 out a million tokens up to
    # 200K input tokens a call; $6 in above (anthropic.com/pricing, "long context")
    price = table.price_of("anthropic:claude-sonnet-4-5")
    base = (price.input, price.cached_input, price.cache_write_input, price.output)
    assert base == pytest.approx((3, 0.3, 3.75, 15))
    assert (price.batch_input, price.batch_output) == pytest.approx((1.5, 7.5))
    assert usage_cost(price, {"input_tokens": 100_000}) == pytest.approx(0.3)
    assert usage_cost(price, {"input_tokens": 300_000}) == pytest.approx(300_000 * 6 / M)


async def test_a_dry_run_prices_each_call_at_its_own_tier_not_the_runs_total(table):
    # three calls of about 80K input tokens: each under Sonnet 4.5's 200K threshold,
    # together over it; the standard figure must not jump to the long-context rate
    from lc_async_pipelines.runner.costs import estimate_run
    from lc_async_pipelines.runner.inputs import Item

    items = [Item(f"i{n}", n, "word " * 56_000) for n in range(3)]
    estimate = await estimate_run(
        lambda llm: llm, items, model="anthropic:claude-sonnet-4-5", prices=table, max_tokens=100
    )
    assert 200_000 < estimate.input_tokens < 3 * 200_000
    expected = (estimate.input_tokens * 3 + estimate.output_tokens * 15) / M
    assert estimate.cost_usd == pytest.approx(expected, rel=1e-3)
    assert estimate.standard_cost_usd == pytest.approx(expected, rel=1e-3)


def test_a_prices_file_keyed_as_the_run_spells_the_model_prices_its_replies(tmp_path):
    # -m anthropic:claude-haiku-4-5: its replies (and the dry run) name claude-haiku-4-5;
    # a file keyed "anthropic:claude-haiku-4-5" was ignored for genai-prices' figures
    path = tmp_path / "mine.json"
    entry = {"input": 100, "output": 200}
    path.write_text(json.dumps({"models": {"anthropic:claude-haiku-4-5": entry}}))
    table = load_prices(path)
    for name in ("claude-haiku-4-5", "anthropic:claude-haiku-4-5"):
        price = table.price_of(name)
        assert price.catalog is None and (price.input, price.output) == (100, 200)
    assert table.price_of("claude-sonnet-4-5").catalog is not None  # the others: genai-prices
