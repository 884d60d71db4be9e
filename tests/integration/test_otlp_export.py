"""The OTLP/HTTP exporter really posts a run's spans and metrics to an endpoint (a local receiver)."""

import openai
from langchain_openai import ChatOpenAI

from benchmarks.mock_server import MockConfig, create_app
from benchmarks.otlp_receiver import serve
from lc_async_pipelines import telemetry
from lc_async_pipelines.runner import Item, RateBudget, RunOptions, run_items, with_budget
from lc_async_pipelines.telemetry import names


async def test_configure_telemetry_exports_spans_and_metrics_over_otlp_http():
    import importlib

    http = importlib.import_module(
        openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0]
    )
    server, received = serve()
    try:
        telemetry.configure_telemetry(f"http://127.0.0.1:{server.server_port}")
        client = openai.DefaultAsyncHttpxClient(
            transport=http.ASGITransport(app=create_app(MockConfig()))
        )
        llm = ChatOpenAI(model="mock", api_key="sk-x", base_url="http://mock/v1",
                         max_retries=0, http_async_client=client)  # fmt: skip
        llm = with_budget(llm, RateBudget())
        items = [Item(str(i), i + 1, f"text {i}") for i in range(3)]
        options = RunOptions(trace_attributes={"pipelines.pipeline": "echo"})
        records = [r async for r in run_items(llm, items, options)]
        telemetry.shutdown_telemetry()  # flushes both exporters
    finally:
        server.shutdown()
    assert all(r.ok for r in records)
    assert received.posts["/v1/traces"] >= 1 and received.posts["/v1/metrics"] >= 1
    by_name: dict[str, list[dict]] = {}
    for span in received.spans:
        by_name.setdefault(span["name"].split(" ")[0], []).append(span)
    [run] = by_name[names.RUN_SPAN]
    assert run["attributes"]["pipelines.pipeline"] == "echo"
    assert len(by_name[names.ITEM_SPAN]) == 3 and len(by_name["chat"]) == 3
    assert {s["parent_id"] for s in by_name[names.ITEM_SPAN]} == {run["span_id"]}
    assert sum(s["attributes"]["gen_ai.usage.output_tokens"] for s in by_name["chat"]) == sum(
        r.usage["output_tokens"] for r in records
    )
    assert {names.TOKEN_USAGE_METRIC, names.DURATION_METRIC, names.ITEMS_METRIC} <= set(
        received.metrics
    )
