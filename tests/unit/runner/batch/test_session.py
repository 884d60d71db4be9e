"""The Batch API behind a chain, against the benchmark mock served in-process (no network).

The mock (``benchmarks/mock_server.py``) runs as an ASGI app inside the
test's event loop, reached through the openai SDK's own HTTP library
(``ASGITransport``), so the files and batches requests, the polling and the
per-request fallback all go through the real SDK and ``ChatOpenAI``.
"""

import importlib
import json

import openai
import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_openai import ChatOpenAI
from starlette.applications import Starlette

from benchmarks.mock_server import MockConfig, create_app
from lc_async_pipelines import build_map_reduce_summary_chain, build_summary_chain
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import (
    Item,
    RateBudget,
    RetryPolicy,
    RunOptions,
    SQLiteCache,
    run_items,
    with_budget,
    with_cache,
)
from lc_async_pipelines.runner.batch import BatchOptions, BatchSession, batches_path
from lc_async_pipelines.runner.batch._files import (
    BatchLimits,
    BatchRequest,
    custom_id,
    input_file,
    parse_results,
    split_requests,
)
from lc_async_pipelines.runner.costs import CostMeter, ModelPrice, PriceTable

# The HTTP library the installed openai SDK is built on (httpx2 for openai>=3).
http = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
FAST = RetryPolicy(max_retries=6, initial=0.01, max_wait=0.05, jitter=0.01)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


# --- files: ids, splitting, results ------------------------------------------------


def test_custom_id_is_stable_across_key_order_and_tells_bodies_apart():
    reordered = {"max_tokens": 5, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert custom_id("/v1/chat/completions", BODY) == custom_id("/v1/chat/completions", reordered)
    assert custom_id("/v1/chat/completions", BODY).endswith("-0")
    assert custom_id("/v1/chat/completions", BODY, 3).endswith("-3")
    other = {**BODY, "max_tokens": 6}
    assert custom_id("/v1/chat/completions", other) != custom_id("/v1/chat/completions", BODY)
    assert custom_id("/v1/responses", BODY) != custom_id("/v1/chat/completions", BODY)
    # a known value: the id must not change between versions, or resumes pay twice
    assert custom_id("/v1/chat/completions", BODY) == "921ea34c5d537fef23d7f49696460b54-0"


def request(i, model="m", words=1):
    body = {"model": model, "messages": [{"role": "user", "content": f"{i} " + "w " * words}]}
    return BatchRequest.make(f"id{i}", "/v1/chat/completions", body)


def test_a_stage_splits_by_model_and_under_every_limit():
    reqs = [request(i, model="a" if i % 3 else "b") for i in range(10)]
    parts = split_requests(reqs, BatchLimits(max_requests=3))
    # groups in order of first appearance: b (0, 3, 6, 9), then a (six requests)
    assert [{r.model for r in p} for p in parts] == [{"b"}] * 2 + [{"a"}] * 2
    assert [len(p) for p in parts] == [3, 1, 3, 3]
    assert [r.custom_id for p in parts for r in p if r.model == "a"] == [
        r.custom_id for r in reqs if r.model == "a"
    ]  # order kept
    line = len(reqs[1].line)
    by_bytes = split_requests(reqs[:4], BatchLimits(max_bytes=2 * line + 1))
    assert all(len(input_file(p)) <= 2 * line + 1 for p in by_bytes) and len(by_bytes) >= 2
    big = [request(i, words=300) for i in range(4)]  # ~170 tokens each
    by_tokens = split_requests(big, BatchLimits(max_tokens=400))
    assert [len(p) for p in by_tokens] == [2, 2]
    assert all(sum(r.tokens for r in p) <= 400 for p in by_tokens)
    alone = split_requests([request(0, words=3000)], BatchLimits(max_tokens=10))
    assert len(alone) == 1  # too large for any batch: alone, the provider says why


def test_an_input_line_is_openais_format():
    line = json.loads(request(1).line)
    assert line == {"custom_id": "id1", "method": "POST", "url": "/v1/chat/completions",
                    "body": request(1).body}  # fmt: skip


def test_result_lines_become_responses_and_unreached_lines_are_worth_retrying():
    lines = [
        {"custom_id": "ok", "response": {"status_code": 200, "body": {"id": "x"}}},
        {"custom_id": "bad", "response": {"status_code": 400, "body": {"error": {}}}},
        {"custom_id": "gone", "response": None,
         "error": {"code": "batch_expired", "message": "late"}},
        {"custom_id": "boom", "response": None, "error": {"code": "server_error"}},
    ]  # fmt: skip
    data = b"\n".join(json.dumps(line).encode() for line in lines) + b"\nnot json\n{}\n"
    results = parse_results(data)
    assert set(results) == {"ok", "bad", "gone", "boom"}
    assert results["ok"].ok and results["ok"].body == {"id": "x"}
    statuses = (results["bad"].status, results["gone"].status, results["boom"].status)
    assert statuses == (400, 503, 500)
    assert results["gone"].body["error"]["message"] == "late"


# --- sessions against the mock ------------------------------------------------------


def mock(**config):
    return create_app(MockConfig(**config))


def model_on(app):
    client = openai.DefaultAsyncHttpxClient(transport=http.ASGITransport(app=app))
    return ChatOpenAI(model="mock", api_key="sk-test", base_url="http://mock/v1", max_retries=0,
                      streaming=True, stream_usage=True, http_async_client=client)  # fmt: skip


async def stats(app):
    async with http.AsyncClient(transport=http.ASGITransport(app=app)) as client:
        return (await client.get("http://mock/stats")).json()


def options(tmp_path, **kwargs):
    kwargs.setdefault("state_path", batches_path(tmp_path / "out.jsonl"))
    return BatchOptions(settle_s=0.05, poll_initial_s=0.01, poll_max_s=0.05, **kwargs)


def documents(n, words=30):
    return [Item(f"d{i}", i + 1, " ".join(f"doc{i}-word{j}" for j in range(words)))
            for i in range(n)]  # fmt: skip


async def run(chain, items, **kwargs):
    records = [r async for r in run_items(chain, items, RunOptions(concurrency=1000, retry=FAST,
                                                                    **kwargs))]  # fmt: skip
    return {r.id: r for r in records}


async def per_request(app, items, build):
    llm = with_budget(model_on(app), RateBudget(), retry=FAST)
    return await run(build(llm), items)


async def test_a_stage_is_one_batch_and_outputs_match_the_per_request_mode(tmp_path):
    app = mock(batch_delay_s=0.05)
    items = documents(40)
    expected = await per_request(app, items, build_summary_chain)
    async with BatchSession(model_on(app), options(tmp_path)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert {k: r.output for k, r in got.items()} == {k: r.output for k, r in expected.items()}
    for item in items:  # each output is its own input's (the mock echoes the prompt)
        assert got[item.id].output.startswith("echo: " + item.input.split()[0])
        assert got[item.id].usage == expected[item.id].usage and got[item.id].calls == 1
    counts = await stats(app)
    assert counts["batches_created"] == 1 and counts["batch_lines"] == 40
    assert session.stats.batches_created == 1 and session.stats.requests_batched == 40
    state = json.loads(batches_path(tmp_path / "out.jsonl").read_text())
    assert [b["status"] for b in state["batches"]] == ["completed"]
    assert len(state["batches"][0]["custom_ids"]) == 40


async def test_a_map_reduce_runs_as_two_batches(tmp_path):
    app = mock(batch_delay_s=0.05)
    # about 2,800 tokens each: three chunks of 1,000, whose summaries (the mock's
    # 64 words) fit one chunk, so no collapse round
    items = documents(6, words=800)
    async with BatchSession(model_on(app), options(tmp_path)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        # the combined summary (the mock's 64 words) is within 60 ±30%: no call to lengthen it
        chain = build_map_reduce_summary_chain(llm, chunk_tokens=1000, map_words=20, max_words=60)
        got = await run(chain, items)
    assert all(r.ok and r.calls >= 4 for r in got.values())
    assert (await stats(app))["batches_created"] == 2
    assert session.stats.requests_batched == sum(r.calls for r in got.values())


async def test_costs_of_batched_calls_are_at_the_batch_price(tmp_path):
    app = mock()
    prices = PriceTable({"mock": ModelPrice(1.0, 2.0, 1.0, 0.5, 1.0, 0.5)})
    meter = CostMeter(prices, model="mock", batch=True)
    async with BatchSession(model_on(app), options(tmp_path)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), documents(5), costs=meter)
    for record in got.values():
        usage = record.usage
        batch = (usage["input_tokens"] * 0.5 + usage["output_tokens"] * 1.0) / 1e6
        assert record.cost_usd == pytest.approx(batch)
        assert record.batch_saved_usd == pytest.approx(batch)


@pytest.mark.parametrize("mode", ["batch", "request"])
async def test_failed_lines_are_retried_in_a_new_batch_or_on_their_own(tmp_path, mode):
    app = mock(batch_fail_rate=0.3, seed=5)
    items = documents(30)
    async with BatchSession(model_on(app), options(tmp_path, retry=mode)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert all(r.ok for r in got.values()), [r.error for r in got.values() if not r.ok]
    assert all(r.output.startswith("echo: " + i.input.split()[0]) for i in items
               for r in [got[i.id]])  # fmt: skip
    failed_lines = session.stats.lines_failed
    counts = await stats(app)
    assert failed_lines == counts["batch_lines_failed"] > 0
    if mode == "batch":
        assert counts["batches_created"] > 1 and counts.get("requests", 0) == 0
    else:
        assert counts["batches_created"] == 1
        assert counts["requests"] == failed_lines == session.stats.requests_direct


async def test_expired_batches_are_retried_until_every_line_is_done(tmp_path):
    app = mock(batch_expire_rate=1.0)  # every batch reaches half its lines
    items = documents(8)
    async with BatchSession(model_on(app), options(tmp_path)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert all(r.ok for r in got.values())
    assert (await stats(app))["batches_created"] == 4  # 8, 4, 2, 1 lines
    assert all(e["status"] == "expired" for e in
               json.loads(options(tmp_path).state_path.read_text())["batches"])  # fmt: skip


async def test_a_resumed_run_waits_on_its_batches_instead_of_paying_again(tmp_path):
    app = mock(batch_delay_s=0.3)
    items = documents(12)
    async with BatchSession(model_on(app), options(tmp_path)) as first:
        llm = with_budget(first.chat_model, RateBudget(), retry=FAST)
        got_first = await run(build_summary_chain(llm), items[:6])
    assert (await stats(app))["batches_created"] == 1
    # a second session over all items, the first six not done yet (as after a kill)
    async with BatchSession(model_on(app), options(tmp_path)) as second:
        llm = with_budget(second.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert second.stats.requests_resumed == 6 and second.stats.batches_resumed == 1
    assert second.stats.batches_created == 1 and second.stats.requests_batched == 6
    assert (await stats(app))["batches_created"] == 2
    assert all(got[k].output == r.output for k, r in got_first.items())


async def test_a_batch_recorded_without_its_id_is_found_not_created_again(tmp_path):
    app = mock()
    items = documents(5)
    async with BatchSession(model_on(app), options(tmp_path)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        expected = await run(build_summary_chain(llm), items)
    # as if killed between creating the batch and recording its id
    path = options(tmp_path).state_path
    state = json.loads(path.read_text())
    state["batches"][0].update(id=None, status="uploaded", output_file_id=None)
    path.write_text(json.dumps(state))
    async with BatchSession(model_on(app), options(tmp_path)) as again:
        llm = with_budget(again.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert again.stats.batches_created == 0 and (await stats(app))["batches_created"] == 1
    assert {k: r.output for k, r in got.items()} == {k: r.output for k, r in expected.items()}
    assert json.loads(path.read_text())["batches"][0]["id"] is not None


async def test_cache_hits_never_enter_a_batch(tmp_path):
    app = mock()
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    items = documents(10)
    for _ in range(2):
        async with BatchSession(model_on(app), options(tmp_path, state_path=None)) as session:
            llm = with_budget(with_cache(session.chat_model, cache), RateBudget(), retry=FAST)
            got = await run(build_summary_chain(llm), items)
            assert all(r.ok for r in got.values())
    assert cache.hits == 10 and session.stats.requests_batched == 0
    assert (await stats(app))["batches_created"] == 1
    cache.close()


async def test_the_enqueued_token_limit_splits_a_stage(tmp_path):
    app = mock()
    items = documents(12, words=40)
    limits = BatchLimits(max_tokens=400)
    async with BatchSession(model_on(app), options(tmp_path, limits=limits)) as session:
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        got = await run(build_summary_chain(llm), items)
    assert all(r.ok for r in got.values())
    state = json.loads(options(tmp_path).state_path.read_text())["batches"]
    assert len(state) == session.stats.batches_created > 1
    assert all(b["tokens"] <= 400 for b in state)


def test_only_an_openai_model_can_batch():
    with pytest.raises(ConfigurationError, match="OpenAI-compatible"):
        BatchSession(FakeListChatModel(responses=["x"]))


async def test_an_endpoint_without_a_batch_api_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigurationError, match=r"no usable Batch API.*404"):
        async with BatchSession(model_on(Starlette()), options(tmp_path)):
            pass


async def test_a_state_file_that_is_not_ours_is_refused(tmp_path):
    path = options(tmp_path).state_path
    path.write_text('{"format": 99}')
    with pytest.raises(ConfigurationError, match="not a batches file"):
        async with BatchSession(model_on(mock()), options(tmp_path)):
            pass


def test_options_out_of_range_are_refused():
    with pytest.raises(ConfigurationError, match="retry"):
        BatchOptions(retry="never")
    with pytest.raises(ConfigurationError, match="window_s"):
        BatchOptions(window_s=0)
    with pytest.raises(ConfigurationError, match="max_tokens"):
        BatchOptions(limits=BatchLimits(max_tokens=0))


def test_a_restart_moves_the_batches_file_aside_with_the_records(tmp_path):
    from lc_async_pipelines.runner.records import RunManifest, open_run

    out = tmp_path / "out.jsonl"
    manifest = RunManifest.new(pipeline="p", fingerprint="f" * 64, model="m",
                               input=tmp_path / "in.txt")  # fmt: skip
    out.write_text("")
    batches_path(out).write_text('{"format": 1, "batches": []}')
    with open_run(out, manifest, restart=True) as run:
        assert run.backup is not None
        assert not batches_path(out).exists()
        assert batches_path(run.backup).exists()
