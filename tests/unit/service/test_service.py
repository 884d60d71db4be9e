import asyncio
import json
import logging

import httpx
import pytest
from langchain_core.messages import AIMessage

from tests.unit.fakes import ConcurrencyProbe, FnChatModel, cycling_llm
from tests.unit.service.conftest import post_scope, sse

STORY = "Once upon a time a fox. It ran home. The end."


async def test_health_and_listing(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        health = (await client.get("/healthz")).json()
        listed = (await client.get("/v1/pipelines")).json()
    assert health["status"] == "ok"
    assert health["model"] == "GenericFakeChatModel"
    assert health["token_required"] is False
    # the built-ins first, in their own order: the page opens on the first
    assert [p["name"] for p in listed] == ["story", "summary", "news"]
    # each with its own example input, the page's placeholder
    examples = [p["example"] for p in listed]
    assert examples[0] == "a lighthouse keeper who collects storms"
    assert len(set(examples)) == 3 and all(examples)


async def test_health_says_when_the_api_needs_a_token_and_never_shows_it(app_for):
    async with app_for(cycling_llm(STORY), api_token="tok-health-secret-0123") as client:
        r = await client.get("/healthz")
    assert r.json()["token_required"] is True
    assert "tok-health-secret-0123" not in r.text


async def test_invoke_returns_output_usage_and_timings(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        r = await client.post("/v1/pipelines/story/invoke", json={"input": "a fox"})
    assert r.status_code == 200
    body = r.json()
    assert body["output"] == STORY
    assert body["calls"] == 1 and body["attempts"] == 1
    assert set(body["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    # the test model is bound with stream=True, so it streams and has a first token
    assert body["ttft_s"] is not None and body["latency_s"] >= body["ttft_s"]


async def test_stream_sends_tokens_then_the_whole_output(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        r = await client.post("/v1/pipelines/story/stream", json={"input": "a fox"})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and kinds.count("token") > 3
    assert "".join(d["text"] for k, d in events if k == "token") == STORY
    assert events[-1][1]["output"] == STORY
    assert events[-1][1]["calls"] == 1


async def test_batch_sends_one_result_per_input(app_for):
    async with app_for(cycling_llm("Summary.")) as client:
        r = await client.post(
            "/v1/pipelines/summary/batch", json={"inputs": ["doc one.", "doc two.", "doc 3."]}
        )
    events = sse(r.text)
    results = [d for k, d in events if k == "result"]
    assert sorted(d["index"] for d in results) == [0, 1, 2]
    assert all(d["output"] == "Summary." and d["error"] is None for d in results)
    assert events[-1] == ("end", {"done": 3, "failed": 0})


@pytest.mark.parametrize(
    ("path", "payload", "status", "says"),
    [
        ("story/invoke", {"input": ""}, 422, "at least 1 character"),
        ("story/invoke", {"input": "   \n"}, 422, "whitespace"),
        ("story/invoke", {"input": "x", "temperature": 2}, 422, "Extra inputs"),
        ("story/invoke", {"input": "x", "max_words": 5}, 422, "greater than or equal to 10"),
        ("story/invoke", {"text": "x"}, 422, "Field required"),
        ("story/stream", {"input": "x" * 2_001}, 413, "at most 2000"),
        ("summary/batch", {"inputs": []}, 422, "at least 1 item"),
        ("summary/batch", {"inputs": ["ok", " "]}, 422, "inputs[1]"),
        ("summary/batch", {"inputs": ["x"] * 65}, 422, "at most 64"),
        ("poem/invoke", {"input": "x"}, 404, "no pipeline 'poem'"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(app_for, path, payload, status, says):
    async with app_for(cycling_llm(STORY)) as client:
        r = await client.post(f"/v1/pipelines/{path}", json=payload)
    assert r.status_code == status
    assert says in r.text


async def test_body_over_the_limit_is_413_declared_or_streamed(app_for):
    async def chunks():
        yield b'{"input": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with app_for(cycling_llm(STORY), max_body_bytes=2_000) as client:
        declared = await client.post("/v1/pipelines/summary/invoke", json={"input": "y" * 3_000})
        streamed = await client.post(
            "/v1/pipelines/summary/invoke",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
    assert declared.status_code == 413
    assert "exceeds the limit of 2000 bytes" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert "exceeds the limit of 2000 bytes" in streamed.json()["detail"]


async def test_bearer_token_guards_the_api_not_health(app_for):
    async with app_for(cycling_llm(STORY), api_token="tok-0123456789abcdef") as client:
        missing = await client.post("/v1/pipelines/story/invoke", json={"input": "x"})
        wrong = await client.get("/v1/pipelines", headers={"Authorization": "Bearer nope"})
        right = await client.get(
            "/v1/pipelines", headers={"Authorization": "Bearer tok-0123456789abcdef"}
        )
        odd = await client.get("/v1/pipelines", headers={"Authorization": b"Bearer \xe9t\xe9"})
        health = await client.get("/healthz")
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert odd.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert health.status_code == 200


async def test_model_errors_reach_the_client_as_class_and_request_id(app_for, caplog):
    async def broken(messages, **_):
        raise ValueError("the model refused")

    caplog.set_level(logging.INFO, logger="lc_async_pipelines.service")
    async with app_for(FnChatModel(fn=broken)) as client:
        invoked = await client.post("/v1/pipelines/story/invoke", json={"input": "x"})
        streamed = await client.post("/v1/pipelines/story/stream", json={"input": "x"})
    assert invoked.status_code == 502
    error = invoked.json()["detail"]["error"]
    assert error["type"] == "ValueError" and len(error["request_id"]) == 12
    assert "the model refused" not in invoked.text and error["request_id"] in error["message"]
    kind, data = sse(streamed.text)[-1]
    assert kind == "error" and data["type"] == "ValueError"
    assert "the model refused" not in streamed.text
    # The details are in the service's own log, under each request id.
    for rid in (error["request_id"], data["request_id"]):
        assert f"request {rid} story/" in caplog.text
    assert "ValueError: the model refused" in caplog.text


async def _call_then_disconnect(app, path: str, body: dict, gone: asyncio.Event) -> list[dict]:
    """Drive the ASGI app by hand: send the request, disconnect once ``gone`` is set."""
    sent: list[dict] = []
    payload = json.dumps(body).encode()
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = post_scope(path, server=("app", 80))
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


@pytest.mark.parametrize("endpoint", ["stream", "invoke"])
async def test_a_client_that_disconnects_cancels_its_model_call(app_for, endpoint):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(messages, **_):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return AIMessage(content="never")

    async with app_for(FnChatModel(fn=slow)) as client:
        await _call_then_disconnect(
            client.app, f"/v1/pipelines/story/{endpoint}", {"input": "x"}, gone=started
        )
        health = (await client.get("/healthz")).json()
    assert started.is_set() and cancelled.is_set()
    assert health["in_flight"] == 0


async def test_requests_share_one_in_flight_budget(app_for):
    probe = ConcurrencyProbe(delay_s=0.01)
    async with app_for(FnChatModel(fn=probe), max_in_flight=2) as client:
        calls = [
            client.post("/v1/pipelines/story/invoke", json={"input": f"t{i}"}) for i in range(6)
        ]
        calls.append(client.post("/v1/pipelines/summary/batch", json={"inputs": ["a", "b", "c"]}))
        responses = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in responses)
    assert probe.peak == 2


async def test_requests_are_logged_after_the_response_without_secrets(app_for, caplog):
    caplog.set_level(logging.INFO, logger="lc_async_pipelines.service")
    async with app_for(cycling_llm(STORY), api_token="tok-secret-0123456789") as client:
        headers = {"Authorization": "Bearer tok-secret-0123456789"}
        await client.post("/v1/pipelines/story/invoke", json={"input": "a fox"}, headers=headers)
        await client.post("/v1/pipelines/story/stream", json={"input": "a fox"}, headers=headers)
    messages = [r.getMessage() for r in caplog.records if r.name == "lc_async_pipelines.service"]
    entries = [json.loads(m.split(" ", 1)[1]) for m in messages if m.startswith("request ")]
    assert [(e["endpoint"], e["ok"]) for e in entries] == [("invoke", True), ("stream", True)]
    assert all(e["pipeline"] == "story" and "usage" in e for e in entries)
    assert "tok-secret-0123456789" not in caplog.text


async def test_the_page_is_served(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        page = await client.get("/")
        docs = await client.get("/openapi.json")
    assert page.status_code == 200 and "/v1/pipelines/" in page.text
    assert "/v1/pipelines/{name}/stream" in docs.json()["paths"]


async def test_stream_retries_a_transient_error_before_the_first_token(app_for):
    import openai

    from lc_async_pipelines.runner import RetryPolicy

    attempts = []

    async def flaky(messages, **_):
        attempts.append(1)
        if len(attempts) == 1:
            response = httpx.Response(503, request=httpx.Request("POST", "http://model/"))
            raise openai.InternalServerError("overloaded", response=response, body=None)
        return AIMessage(content="Second time lucky.")

    fast = RetryPolicy(max_retries=2, initial=0.001, max_wait=0.01, jitter=0.001)
    async with app_for(FnChatModel(fn=flaky), retry=fast) as client:
        r = await client.post("/v1/pipelines/story/stream", json={"input": "x"})
    assert len(attempts) == 2
    assert sse(r.text)[-1][0] == "end"
    assert sse(r.text)[-1][1]["output"] == "Second time lucky."


async def test_invoke_past_its_deadline_is_504(app_for):
    async def slow(messages, **_):
        await asyncio.sleep(30)
        return AIMessage(content="late")

    async with app_for(FnChatModel(fn=slow), request_timeout_s=0.05) as client:
        r = await client.post("/v1/pipelines/story/invoke", json={"input": "x"})
    assert r.status_code == 504
    assert r.json()["detail"]["error"]["type"] == "DeadlineExceeded"
