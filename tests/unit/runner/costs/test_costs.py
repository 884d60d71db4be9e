"""Prices, the cost of calls and records, the --max-cost cap, and the dry-run estimate."""

import io
import json
import logging
from uuid import uuid4

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from lc_async_pipelines import build_story_chain
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import Item, RunOptions, SQLiteCache, run_items, with_cache
from lc_async_pipelines.runner import write_records as write
from lc_async_pipelines.runner.costs import (
    CostMeter,
    DryRunModel,
    ModelPrice,
    PriceTable,
    estimate_message_tokens,
    estimate_run,
    load_prices,
    usage_cost,
)
from lc_async_pipelines.runner.records import run_totals
from tests.unit.fakes import FnChatModel

# $1 a million input tokens, $2 output; cached $0.5; batch half of each.
PRICE = ModelPrice(
    input=1.0, output=2.0, cached_input=0.5, batch_input=0.5, batch_output=1.0,
    batch_cached_input=0.25,
)  # fmt: skip
TABLE = PriceTable({"m1": PRICE}, source="test", as_of="2025-01-01")


def test_prices_come_from_genai_prices_and_batch_is_cheaper():
    table = load_prices()
    assert table.source.startswith("genai-prices ") and table.catalog
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3",
                 "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"):  # fmt: skip
        price = table.price_of(name)
        assert price is not None, name
        assert 0 < price.batch_input < price.input and 0 < price.batch_output < price.output
        assert price.cached_input <= price.input


def test_the_embedded_model_costs_nothing():
    price = load_prices().price_of("smollm2-135m-instruct")
    assert price is not None and price.rates() == (0, 0, 0, 0)


def test_snapshots_and_provider_prefixes_find_their_model():
    table = load_prices()
    assert table.price_of("gpt-4o-mini-2024-07-18") == table.price_of("gpt-4o-mini")
    assert table.price_of("openai:gpt-4.1") == table.price_of("gpt-4.1")
    # a snapshot the table lists has its own price
    assert table.price_of("gpt-4o-2024-05-13") != table.price_of("gpt-4o")
    assert table.price_of("mock") is None and table.price_of(None) is None


def test_a_prices_file_adds_and_replaces_models_and_fills_missing_figures(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"source": "mine", "as_of": "2026-01-01", "models": {
        "mock": {"input": 3, "output": 4},
        "gpt-4o": {"input": 9, "output": 9, "batch_input": 1},
    }}))  # fmt: skip
    table = load_prices(path)
    mock = table.price_of("mock")
    assert mock == ModelPrice(3, 4, cached_input=3, batch_input=3, batch_output=4,
                              batch_cached_input=3)  # fmt: skip
    assert table.price_of("gpt-4o").batch_cached_input == 1  # batch input, no cache discount
    assert table.price_of("gpt-4o-mini") == load_prices().price_of("gpt-4o-mini")
    assert "mine" in table.source and table.as_of == "2026-01-01"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "not JSON"),
        ('{"models": []}', "expected"),
        ('{"models": {"m": {"input": 1}}}', "model 'm': 'output' is missing"),
        ('{"models": {"m": {"input": 1, "output": -2}}}', "model 'm': 'output' must be >= 0"),
        ('{"models": {"m": {"input": "1", "output": 2}}}', "model 'm': 'input' must be a number"),
        ('{"models": {"m": {"input": 1, "output": 2, "outptu": 2}}}', "unknown field 'outptu'"),
        ('{"models": {"m": {"input": true, "output": 2}}}', "'input' must be a number"),
        ('{"format": 9, "models": {}}', "format 9"),
    ],
)
def test_a_bad_prices_file_is_one_line_naming_model_and_field(tmp_path, content, expected):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        load_prices(path)
    message = str(caught.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_missing_prices_file_says_so(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_prices(tmp_path / "none.json")


def test_cost_arithmetic_standard_cached_and_batch():
    usage = {"input_tokens": 1_000_000, "output_tokens": 500_000,
             "input_token_details": {"cache_read": 400_000}}  # fmt: skip
    # 600k uncached at $1, 400k cached at $0.5, 500k out at $2
    assert usage_cost(PRICE, usage) == pytest.approx(0.6 + 0.2 + 1.0)
    # batch: 600k at $0.5, 400k at $0.25, 500k at $1
    assert usage_cost(PRICE, usage, batch=True) == pytest.approx(0.3 + 0.1 + 0.5)
    assert usage_cost(PRICE, {}) == 0


def test_message_tokens_count_the_framing():
    from langchain_core.messages import HumanMessage, SystemMessage

    text = "x" * 35  # 10 tokens at 3.5 characters each
    assert estimate_message_tokens([HumanMessage(text)]) == 10 + 3 + 3
    assert estimate_message_tokens([SystemMessage(text), HumanMessage(text)]) == 2 * 13 + 3


def replying(usage=None, **metadata):
    async def fn(messages, **kwargs):
        meta = {"model_name": "m1", **metadata}
        return AIMessage(content="Done.", response_metadata=meta,
                         usage_metadata=usage or {"input_tokens": 1000, "output_tokens": 500,
                                                  "total_tokens": 1500})  # fmt: skip

    return FnChatModel(fn=fn)


def items(n):
    return [Item(f"id{i}", i + 1, f"input number {i}") for i in range(n)]


async def test_records_carry_their_cost_and_the_summary_totals_it(tmp_path):
    meter = CostMeter(TABLE, model="m1")
    out = io.StringIO()
    records = run_items(replying(), items(4), RunOptions(costs=meter))
    summary = await write(records, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    each = (1000 * 1.0 + 500 * 2.0) / 1e6
    assert [line["cost_usd"] for line in lines] == [pytest.approx(each)] * 4
    assert summary.cost_usd == pytest.approx(4 * each) == pytest.approx(meter.session_usd)
    assert summary.as_dict()["batch_saved_usd"] == 0 and summary.unpriced == 0
    path = tmp_path / "out.jsonl"
    path.write_text(out.getvalue())
    assert run_totals(path).cost_usd == pytest.approx(4 * each)


async def test_batch_replies_cost_the_batch_price_and_count_the_saving():
    meter = CostMeter(TABLE, model="m1", batch=True)
    records = [r async for r in run_items(replying(service_tier="batch"), items(2),
                                          RunOptions(costs=meter))]  # fmt: skip
    standard, batch = 2000 / 1e6, 1000 / 1e6
    for record in records:
        assert record.cost_usd == pytest.approx(batch)
        assert record.batch_saved_usd == pytest.approx(standard - batch)


async def test_cache_hits_cost_nothing_and_count_what_they_saved(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    model = with_cache(replying(), cache)
    first = CostMeter(TABLE, model="m1")
    [r async for r in run_items(model, items(3), RunOptions(costs=first))]
    again = CostMeter(TABLE, model="m1")
    records = [r async for r in run_items(model, items(3), RunOptions(costs=again))]
    assert cache.hits == 3
    assert all(r.cost_usd == 0 and r.cache_saved_usd == pytest.approx(0.002) for r in records)
    assert again.session_usd == 0 and again.cache_saved_usd == pytest.approx(0.006)
    cache.close()


async def test_a_model_without_price_gives_null_cost_and_one_warning(caplog):
    meter = CostMeter(PriceTable({}), model="m1")
    with caplog.at_level(logging.WARNING):
        records = [r async for r in run_items(replying(), items(3), RunOptions(costs=meter))]
    assert [r.cost_usd for r in records] == [None] * 3
    warnings = [r for r in caplog.records if "no price for model 'm1'" in r.getMessage()]
    assert len(warnings) == 1 and meter.unpriced == {"m1"}


async def test_a_self_hosted_model_without_price_is_unpriced_without_a_warning(caplog):
    meter = CostMeter(PriceTable({}), model="m1", warn_unpriced=False)
    with caplog.at_level(logging.WARNING):
        records = [r async for r in run_items(replying(), items(3), RunOptions(costs=meter))]
    assert [r.cost_usd for r in records] == [None] * 3 and meter.unpriced == {"m1"}
    assert not [r for r in caplog.records if "no price" in r.getMessage()]


def test_a_cap_needs_a_price_for_the_model():
    with pytest.raises(ConfigurationError, match="no price for model 'gpt-x'"):
        CostMeter(TABLE, model="gpt-x", max_cost_usd=1.0)
    with pytest.raises(ConfigurationError, match=">= 0"):
        CostMeter(TABLE, model="m1", max_cost_usd=-1.0)


async def test_max_cost_stops_admitting_items_and_a_resume_finishes():
    # each item costs $0.002; estimated before any finishes from 512 output
    # tokens plus its input, then from the measured cost: refusals wait for
    # the items in flight, so the run spends most of the cap and stays within it.
    cap = 0.0101
    meter = CostMeter(TABLE, model="m1", max_cost_usd=cap)
    first = [r async for r in run_items(replying(), items(20),
                                        RunOptions(concurrency=2, costs=meter))]  # fmt: skip
    assert meter.capped and 0 < len(first) < 20
    assert meter.spent_usd <= cap
    assert meter.spent_usd >= cap * 0.9  # it used most of it (issue 18: at least 90%)
    done = frozenset(r.id for r in first)
    more = CostMeter(TABLE, model="m1", prior_usd=meter.spent_usd)  # resumed without a cap
    rest = [r async for r in run_items(replying(), items(20),
                                       RunOptions(skip=done, costs=more))]  # fmt: skip
    assert sorted(r.id for r in first + rest) == sorted(i.id for i in items(20))
    assert not more.capped and more.spent_usd == pytest.approx(20 * 0.002)


async def test_a_cap_below_one_item_starts_nothing():
    meter = CostMeter(TABLE, model="m1", max_cost_usd=0.0001)
    records = [r async for r in run_items(replying(), items(5), RunOptions(costs=meter))]
    assert records == [] and meter.capped and meter.spent_usd == 0


async def test_the_cap_learns_multi_call_items_from_those_that_finished():
    # three calls an item ($0.006): the first estimate ($0.001) is too low,
    # later ones learn it. One item at a time: items in flight together would
    # all be admitted on the first estimate.
    model = replying()
    chain = RunnableLambda(lambda x: x) | model | (lambda m: "x") | model | (lambda m: "y") | model
    meter = CostMeter(TABLE, model="m1", max_cost_usd=0.0305)
    same_size = [Item(f"id{i}", i + 1, f"input number {i:02d}") for i in range(40)]
    records = [r async for r in run_items(chain, same_size,
                                          RunOptions(concurrency=1, costs=meter))]  # fmt: skip
    assert meter.capped and meter.spent_usd <= 0.0305
    assert len(records) == 5


async def test_dry_run_counts_every_call_of_a_two_step_chain_and_sends_nothing():
    topics = [Item(f"t{i}", i, f"topic {i}") for i in range(5)]
    estimate = await estimate_run(
        lambda llm: build_story_chain(llm, max_words=50, outline=True),
        topics, model="m1", prices=TABLE, rpm=60,
    )  # fmt: skip
    assert estimate.items == 5 and estimate.calls == 10 and estimate.stopped == 0
    # each reply counted at its max_tokens: the outline's 60 words, the story's 50
    from lc_async_pipelines._text import max_tokens_for_words

    assert estimate.output_tokens == 5 * (max_tokens_for_words(60) + max_tokens_for_words(50))
    expected = (estimate.input_tokens * 1.0 + estimate.output_tokens * 2.0) / 1e6
    assert estimate.cost_usd == pytest.approx(expected)
    assert estimate.wall_s == pytest.approx(10.0)  # 10 calls at 60 a minute
    assert "10 model calls" in estimate.describe()


async def test_dry_run_at_the_batch_price_and_with_row_errors_and_skips():
    rows = [Item("a", 1, "aa"), Item("b", 2, "bb"), Item("c", 3, "", error="empty row")]
    estimate = await estimate_run(
        lambda llm: ChatPromptTemplate.from_messages([("human", "{x}")]) | llm,
        [Item(r.id, r.line, {"x": r.input}, r.error) for r in rows],
        model="m1", prices=TABLE, batch=True, skip=frozenset({"b"}),
    )  # fmt: skip
    assert estimate.items == 1 and estimate.row_errors == 1 and estimate.calls == 1
    assert estimate.cost_usd == pytest.approx(estimate.standard_cost_usd / 2)
    assert "Batch API price" in estimate.describe()


def test_the_stand_in_reply_is_as_long_as_max_tokens():
    reply = DryRunModel(model_name="m1").invoke("hello", max_tokens=100)
    from lc_async_pipelines._text import estimate_tokens

    assert abs(estimate_tokens(reply.content) - 100) <= 2
    assert reply.usage_metadata["output_tokens"] == 100


async def test_a_resume_knows_what_earlier_sessions_spent(tmp_path):
    from lc_async_pipelines.runner.records import RunManifest, done_ids, open_run

    out = tmp_path / "out.jsonl"
    manifest = RunManifest.new(pipeline="p", fingerprint="f" * 64, model="m1",
                               input=tmp_path / "in.txt")  # fmt: skip
    with open_run(out, manifest, restart=False) as run:
        meter = CostMeter(TABLE, model="m1")
        await write(run_items(replying(), items(3), RunOptions(costs=meter)), run.out)
    before = out.read_bytes()
    assert done_ids(out) == {"id0", "id1", "id2"} and out.read_bytes() == before
    with open_run(out, manifest, restart=False) as run:
        assert run.prior.cost_usd == pytest.approx(3 * 0.002)


def test_a_refusal_while_others_run_is_not_final_and_is_asked_again():
    def finish(item):
        # 250 output tokens at $2 a million and 0 input: $0.0005, as the provider reports it
        costs = meter.item(item.id)
        usage = {"input_tokens": 0, "output_tokens": 250, "total_tokens": 250}
        reply = AIMessage(content="x", usage_metadata=usage, response_metadata={"model_name": "m1"})
        costs.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]), run_id=uuid4())
        meter.finish(item, costs)

    # 512 output tokens at $2 a million: about $0.001 an item before any finishes
    meter = CostMeter(TABLE, model="m1", max_cost_usd=0.0014)
    first, second = Item("a", 1, "short"), Item("b", 2, "short")
    assert meter.admit(first)
    assert not meter.admit(second) and not meter.capped  # not now: one is in flight
    finish(first)
    assert meter.admit(second)  # measured at $0.0005 an item: room for it now
    finish(second)
    assert not meter.admit(Item("c", 3, "short")) and meter.capped  # none in flight: for good
    assert meter.spent_usd == pytest.approx(0.001)
