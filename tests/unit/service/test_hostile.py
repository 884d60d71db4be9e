"""The service under hostile clients, over ASGI: auth before the body, no 5xx for any body,
short 422s, the docs behind the token and off any CDN, security headers, no secret in a
reply, Host checks, and the body read deadline."""

import asyncio
import base64
import hashlib
import json
import logging
import re

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from langchain_core.messages import AIMessage
from pydantic import BaseModel, SecretStr

from lc_async_pipelines.registry import PipelineSpec
from lc_async_pipelines.service import ServiceSettings, _routes, create_app
from lc_async_pipelines.service._routes import page_html
from tests.unit.fakes import FnChatModel, cycling_llm
from tests.unit.service.conftest import post_scope, sse

STORY = "Once upon a time a fox. It ran home. The end."
TOKEN = "tok-hostile-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


# 1. Auth before body parsing -------------------------------------------------------------


async def test_fastapi_decodes_the_body_before_a_router_dependency_runs():
    """Why the token is checked in a middleware: a router dependency would answer 422 first."""

    def deny() -> None:
        raise HTTPException(401, "no")

    class Body(BaseModel):
        input: str

    app = FastAPI()

    @app.post("/x", dependencies=[Depends(deny)])
    async def x(body: Body) -> str:
        return body.input

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        r = await client.post("/x", content=b"{not json", headers=JSON)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("story/invoke", b"{not json", "application/json"),
        ("story/invoke", b'{"inputs": 3, "max_words": "many"}', "application/json"),
        ("story/stream", b'{"input": "x", "max_words": NaN}', "application/json"),
        ("summary/batch", b'{"inputs": []}', "application/json"),
        ("story/invoke", b"\xff\xfe not text", "text/plain"),
        ("story/invoke", b"", "application/json"),
        ("poem/invoke", b'{"input": "x"}', "application/json"),
        ("story/invoke", b'{"input": "' + b"x" * 5_000 + b'"}', "application/json"),
    ],
)
async def test_without_the_token_any_body_is_a_401_that_reveals_nothing(
    app_for, path, body, content_type
):
    async with app_for(cycling_llm(STORY), api_token=TOKEN, max_body_bytes=1_000) as client:
        r = await client.post(
            f"/v1/pipelines/{path}", content=body, headers={"content-type": content_type}
        )
        wrong = await client.post(
            f"/v1/pipelines/{path}",
            content=body,
            headers={"content-type": content_type, "authorization": "Bearer nope"},
        )
    for response in (r, wrong):
        assert response.status_code == 401
        assert response.json() == {"detail": "missing or wrong bearer token"}
        assert response.headers["www-authenticate"] == "Bearer"


# 2. No 5xx for any body ---------------------------------------------------------------------

BIG = b"1" + b"0" * 400  # 10**400 as a JSON literal
HUGE = b"1" + b"0" * 5_000  # past Python's 4,300-digit int conversion limit
DEEP = b"[" * 10_000 + b"]" * 10_000

HOSTILE = [
    ("max_words 1e308", b'{"input": "x", "max_words": 1e308}', 422),
    ("max_words -1e308", b'{"input": "x", "max_words": -1e308}', 422),
    ("max_words 10**400", b'{"input": "x", "max_words": ' + BIG + b"}", 422),
    ("input 10**400", b'{"input": ' + BIG + b"}", 422),
    ("input 10**5000", b'{"input": ' + HUGE + b"}", 422),
    ("max_words 1e400 (inf)", b'{"input": "x", "max_words": 1e400}', 422),
    ("max_words NaN", b'{"input": "x", "max_words": NaN}', 422),
    ("max_words Infinity", b'{"input": "x", "max_words": Infinity}', 422),
    ("max_words -Infinity", b'{"input": "x", "max_words": -Infinity}', 422),
    ("NaN inside an object", b'{"input": {"a": NaN}}', 422),
    ("lone high surrogate", b'{"input": "\\ud800"}', 422),
    ("lone low surrogate", b'{"input": "a\\udc00b"}', 422),
    ("surrogate in a key", b'{"input": {"\\ud800": "x"}}', 422),
    ("a surrogate pair is fine", b'{"input": "\\ud83e\\udd8a a fox"}', 200),
    ("raw invalid UTF-8", b'{"input": "\xff\xfe"}', 422),
    ("UTF-8 encoded surrogate", b'{"input": "\xed\xa0\x80"}', 422),
    ("overlong UTF-8", b'{"input": "\xc0\xaf"}', 422),
    ("10,000 nested arrays in input", b'{"input": ' + DEEP + b"}", 422),
    ("10,000 nested arrays as the body", DEEP, 422),
    ("500 nested arrays in an object", b'{"input": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}", 422),
    ("empty body", b"", 422),
    ("only whitespace", b"  \n ", 422),
    ("null", b"null", 422),
    ("an array", b"[]", 422),
    ("a string", b'"x"', 422),
    ("a NUL in the text", b'{"input": "a\\u0000b"}', 200),
    ("truncated", b'{"input": "x', 422),
    ("trailing garbage", b'{"input": "x"} {}', 422),
    ("duplicate keys", b'{"input": 1, "input": "x"}', 200),
]


@pytest.mark.parametrize(("name", "body", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_no_body_gets_a_5xx(app_for, name, body, status):
    async with app_for(cycling_llm(STORY), api_token=TOKEN) as client:
        invoked = await client.post(
            "/v1/pipelines/story/invoke", content=body, headers={**JSON, **AUTH}
        )
        others = [
            await client.post(f"/v1/pipelines/{path}", content=body, headers={**JSON, **AUTH})
            for path in ("story/stream", "summary/batch")
        ]
    assert invoked.status_code == status, invoked.text
    assert all(r.status_code < 500 for r in others), [r.text for r in others]
    assert len(invoked.content) < 5_000


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/xml", 415),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.example+json", 200),
        ("Application/JSON", 200),
    ],
)
async def test_only_json_bodies_are_taken(app_for, content_type, status):
    async with app_for(cycling_llm(STORY)) as client:
        r = await client.post(
            "/v1/pipelines/story/invoke",
            content=b'{"input": "a fox"}',
            headers={"content-type": content_type},
        )
    assert r.status_code == status, r.text


async def test_a_body_without_a_content_type_is_a_415_and_no_body_a_422(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        typeless = await client.post("/v1/pipelines/story/invoke", content=b'{"input": "x"}')
        empty = await client.post("/v1/pipelines/story/invoke")
    assert typeless.status_code == 415
    assert empty.status_code == 422 and empty.json()["detail"][0]["type"] == "missing"


async def test_a_factory_failing_on_its_options_is_a_422_not_a_500(app_for):
    def fussy(llm, *, max_words: int = 100):
        if max_words != 100:
            raise RuntimeError("cannot build today")
        return cycling_llm(STORY)

    spec = PipelineSpec("fussy", fussy)
    async with app_for(cycling_llm(STORY), pipelines={"fussy": spec}) as client:
        r = await client.post("/v1/pipelines/fussy/invoke", json={"input": "x", "max_words": 50})
    assert r.status_code == 422
    assert r.json()["detail"]["error"]["type"] == "RuntimeError"
    assert "cannot build today" not in r.text


async def test_a_lone_surrogate_in_the_model_reply_is_replaced_not_a_500(app_for):
    async def cut(messages, **_):
        return AIMessage(content="half \ud83d of an emoji. The end.")

    async with app_for(FnChatModel(fn=cut)) as client:
        invoked = await client.post("/v1/pipelines/story/invoke", json={"input": "x"})
        streamed = await client.post("/v1/pipelines/story/stream", json={"input": "x"})
    assert invoked.status_code == 200 and "\ufffd" in invoked.json()["output"]
    assert sse(streamed.text)[-1][0] == "end"


# 3. A 422 echoes an excerpt only --------------------------------------------------------


async def test_a_422_echoes_only_short_excerpts(app_for):
    batch = {"inputs": ["y" * 15_000] * 65}
    long_words = {"input": "x", "max_words": "z" * 15_000}
    wrong_types = {"inputs": [[i] * 3_000 for i in range(64)]}
    async with app_for(cycling_llm(STORY)) as client:
        responses = [
            await client.post("/v1/pipelines/summary/batch", json=body)
            for body in (batch, wrong_types)
        ]
        responses.append(await client.post("/v1/pipelines/story/invoke", json=long_words))
    sizes = [len(r.content) for r in responses]
    assert all(r.status_code == 422 for r in responses)
    assert max(sizes) < 8_000, sizes  # not ~1 MB
    for r in responses:
        errors = r.json()["detail"]
        assert 1 <= len(errors) <= 20
        for error in errors:
            shown = (
                error["input"] if isinstance(error["input"], str) else json.dumps(error["input"])
            )
            assert len(shown) <= 101
    assert (
        responses[0].json()["detail"][0]["msg"]
        == "List should have at most 64 items after validation, not 65"
    )
    assert responses[0].json()["detail"][0]["input"].endswith("…")


# 6. The docs ---------------------------------------------------------------------------


async def test_the_docs_are_a_plain_page_without_any_other_origin(app_for):
    async with app_for(cycling_llm(STORY)) as client:
        docs = await client.get("/docs")
        schema = await client.get("/openapi.json")
        gone = [(await client.get(p)).status_code for p in ("/redoc", "/docs/oauth2-redirect")]
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/v1/pipelines/{name}/stream" in docs.text and "InvokeRequest" in docs.text
    assert "<script" not in docs.text
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', docs.text)
    assert links == ["openapi.json"]
    assert "http://" not in docs.text and "https://" not in docs.text and "//cdn" not in docs.text
    assert schema.status_code == 200 and "/v1/pipelines/{name}/invoke" in schema.json()["paths"]
    assert gone == [404, 404]


async def test_the_docs_and_schema_need_the_token_when_one_is_set(app_for):
    async with app_for(cycling_llm(STORY), api_token=TOKEN) as client:
        refused = [(await client.get(p)).status_code for p in ("/docs", "/openapi.json")]
        allowed = [
            (await client.get(p, headers=AUTH)).status_code for p in ("/docs", "/openapi.json")
        ]
        still_open = [(await client.get(p)).status_code for p in ("/", "/healthz")]
    assert refused == [401, 401]
    assert allowed == [200, 200]
    assert still_open == [200, 200]


# 7. Security headers ---------------------------------------------------------------------


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_every_response_carries_the_security_headers():
    guarded = create_app(
        cycling_llm(STORY), settings=ServiceSettings(api_token=TOKEN, max_body_bytes=1_000)
    )
    unguarded = create_app(cycling_llm(STORY), settings=ServiceSettings())

    @guarded.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    responses = []
    for app in (guarded, unguarded):
        # Raise nothing into the test: the app's own 500 reply is what is checked.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            if app is unguarded:
                responses.append(await client.get("/healthz", headers={"host": "evil.example"}))
                continue
            for request in [
                client.get("/"),
                client.get("/healthz"),
                client.get("/docs", headers=AUTH),
                client.get("/v1/pipelines", headers=AUTH),
                client.get("/v1/pipelines"),  # 401
                client.post("/v1/pipelines/poem/invoke", json={"input": "x"}, headers=AUTH),
                client.post("/v1/pipelines/story/invoke", json={"input": ""}, headers=AUTH),
                client.post("/v1/pipelines/story/invoke", content=b"x" * 2_000, headers=AUTH),
                client.post("/v1/pipelines/story/invoke", content=b"x", headers=AUTH),
                client.post("/v1/pipelines/story/stream", json={"input": "x"}, headers=AUTH),
                client.get("/boom", headers=AUTH),
            ]:
                responses.append(await request)
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 200, 401, 404, 422, 413, 415, 200, 500, 400]
    for r in responses:
        for name, value in HEADERS.items():
            assert r.headers[name] == value, (r.request.url, name)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp and "*" not in csp


async def test_the_policy_allows_the_pages_inline_code_by_hash_only(app_for):
    html = page_html()
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL).group(1)
    async with app_for(cycling_llm(STORY)) as client:
        csp = (await client.get("/")).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == f"'self' {_sha256(script)}"
    assert directives["style-src"].startswith(f"'self' {_sha256(style)} ")
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"


def test_the_page_keeps_the_token_out_of_local_storage():
    html = page_html()
    assert "localStorage.setItem" not in html and "localStorage.getItem" not in html
    assert "sessionStorage" not in html  # memory only


# 8. Secrets never leave -------------------------------------------------------------------

LEAKY = "Authorization: Bearer sk-test-SECRET123456789"
CONFIGURED_KEY = "cfgkey-7f3a-91bd-0c44"


class KeyedModel(FnChatModel):
    """A chat model holding an API key, as ChatOpenAI does."""

    openai_api_key: SecretStr


async def test_no_secret_reaches_a_client_and_the_log_has_them_redacted(app_for, caplog):
    async def leaky(messages, **_):
        raise RuntimeError(f"upstream 401: echo of {LEAKY}; key {CONFIGURED_KEY}; tok {TOKEN}")

    caplog.set_level(logging.INFO, logger="lc_async_pipelines.service")
    llm = KeyedModel(fn=leaky, openai_api_key=SecretStr(CONFIGURED_KEY))
    async with app_for(llm, api_token=TOKEN) as client:
        invoked = await client.post("/v1/pipelines/story/invoke", json={"input": "x"}, headers=AUTH)
        streamed = await client.post(
            "/v1/pipelines/story/stream", json={"input": "x"}, headers=AUTH
        )
        batch = await client.post(
            "/v1/pipelines/summary/batch", json={"inputs": ["a", "b"]}, headers=AUTH
        )
    assert invoked.status_code == 502
    replies = invoked.content + streamed.content + batch.content
    for secret in ("sk-test-SECRET123456789", CONFIGURED_KEY, TOKEN, "upstream 401", "Bearer"):
        assert secret.encode() not in replies
    ids = [invoked.json()["detail"]["error"]["request_id"], sse(streamed.text)[-1][1]["request_id"]]
    results = [d for k, d in sse(batch.text) if k == "result"]
    assert [r["error"]["type"] for r in results] == ["RuntimeError", "RuntimeError"]
    ids.append(results[0]["error"]["request_id"])
    failures = [r.getMessage() for r in caplog.records if "failed: RuntimeError" in r.getMessage()]
    assert len(failures) == 4  # invoke, stream, two batch inputs
    for rid in ids:
        assert any(rid in line for line in failures)
    for line in failures:
        assert "upstream 401" in line and "[redacted]" in line
    for secret in ("sk-test-SECRET123456789", CONFIGURED_KEY, TOKEN):
        assert secret not in caplog.text


# 9. Host header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "settings", "status"),
    [
        ("localhost:8000", {}, 200),
        ("127.0.0.1:8000", {}, 200),
        ("[::1]:8000", {}, 200),
        ("evil.example", {}, 400),
        ("127.0.0.1.nip.io", {}, 400),
        ("localhost.evil.example", {}, 400),
        ("pipelines.lan:8000", {"allowed_hosts": "pipelines.lan"}, 200),
        ("x.lan", {"allowed_hosts": "*.lan"}, 200),
        ("evil.example", {"api_token": TOKEN}, 200),
    ],
)
async def test_without_a_token_only_loopback_and_allowed_host_names_are_answered(
    app_for, host, settings, status
):
    async with app_for(cycling_llm(STORY), **settings) as client:
        r = await client.get("/v1/pipelines", headers={"host": host, **AUTH})
    assert r.status_code == status, r.text


# 4 (app side). The body read deadline ----------------------------------------------------


async def test_a_body_that_does_not_arrive_in_time_is_a_408_that_closes():
    app = create_app(cycling_llm(STORY), settings=ServiceSettings(body_timeout_s=0.2))
    sent: list[dict] = []
    chunks = iter([b'{"input": "a f'])

    async def receive():
        chunk = next(chunks, None)
        if chunk is not None:
            return {"type": "http.request", "body": chunk, "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes

    async def send(message):
        sent.append(message)

    scope = post_scope("/v1/pipelines/story/invoke")
    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert b"did not arrive within 0.2 s" in sent[1]["body"]


async def test_a_stream_client_that_stops_reading_is_dropped_and_its_model_call_cancelled(
    app_for, monkeypatch
):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def endless(messages, **_):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return AIMessage(content="never")

    payload = b'{"input": "x"}'
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.sleep(3600)  # never disconnects either

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            await asyncio.sleep(3600)  # the client never takes an event: its buffer is full

    scope = post_scope("/v1/pipelines/story/stream")
    # A ping is the first event a stalled model lets through: make it come at once.
    original = _routes.EventSourceResponse
    monkeypatch.setattr(
        _routes, "EventSourceResponse", lambda *a, **kw: original(*a, **{**kw, "ping": 0.05})
    )
    async with app_for(FnChatModel(fn=endless), send_timeout_s=0.2) as client:
        with pytest.raises(Exception) as dropped:
            await asyncio.wait_for(client.app(scope, receive, send), timeout=30)
        health = (await client.get("/healthz")).json()
    assert type(dropped.value).__name__ == "SendTimeoutError"
    assert started.is_set() and cancelled.is_set()
    assert health["in_flight"] == 0
