"""A user's prompt, schema and factory chain on the embedded model: CLI, records and SSE."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.integration._live import serve

ROOT = Path(__file__).resolve().parents[2]


def _env(embedded_server, **extra):
    env = {**os.environ, "PIPELINES_EMBEDDED_URL": embedded_server.base_url, **extra}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL"):
        env.pop(name, None)
    return env


def _pipelines(args, cwd, env, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "lc_async_pipelines", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_schema_output_is_valid_json_for_real_news_articles(embedded_server, data_dir, tmp_path):
    schema_path = ROOT / "examples" / "news_analysis.schema.json"
    out = tmp_path / "analyses.jsonl"
    args = [
        "run", "--prompt", str(ROOT / "examples" / "news_analysis.txt"),
        "--schema", str(schema_path),
        "--input", str(data_dir / "news_summaries" / "writer_summaries.json"),
        "--id-field", "article_id", "--limit", "4", "--concurrency", "4",
        "--output", str(out),
    ]  # fmt: skip
    done = _pipelines(args, tmp_path, _env(embedded_server))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "smollm2-135m-instruct (embedded)" in done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4  # the 20-article figure is in the README
    schema = json.loads(schema_path.read_text())
    for record in records:
        assert record["error"] is None
        jsonschema.validate(record["output"], schema)
        assert isinstance(record["input"], dict) and "article" in record["input"]


FACTORY = '''
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "You write one-line headlines."),
     ("human", "Write a headline in the style of {paper} for: {event}")]
)


def build_headline_chain(llm, *, max_tokens: int = 40):
    """A headline for an event, in a newspaper's style."""
    return PROMPT | llm.bind(max_tokens=max_tokens) | StrOutputParser()
'''


@pytest.fixture
def user_app(tmp_path):
    app = tmp_path / "app"
    (app / "my_news").mkdir(parents=True)
    (app / "my_news" / "__init__.py").write_text("")
    (app / "my_news" / "chains.py").write_text(textwrap.dedent(FACTORY))
    (app / "events.jsonl").write_text(
        '{"id": "e1", "paper": "a tabloid", "event": "a cat was elected mayor"}\n'
        '{"id": "e2", "paper": "a broadsheet", "event": "the river froze in May"}\n'
        '{"id": "e3", "paper": "a local weekly", "event": "the bakery won a prize"}\n'
    )
    return app


def test_user_factory_runs_over_jsonl_on_the_embedded_model(embedded_server, user_app):
    out = user_app / "headlines.jsonl"
    args = ["run", "my_news.chains:build_headline_chain", "--input", "events.jsonl",
            "--output", str(out)]  # fmt: skip
    done = _pipelines(args, user_app, _env(embedded_server))
    assert done.returncode == 0, done.stderr[-2000:]
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"e1", "e2", "e3"}
    assert all(r["error"] is None and r["output"].strip() for r in records.values())
    assert all(r["usage"]["output_tokens"] > 0 for r in records.values())


def test_user_factory_streams_through_the_service(embedded_server, user_app, monkeypatch):
    from lc_async_pipelines.models import ModelSettings, make_chat_model
    from lc_async_pipelines.registry import load_pipeline
    from lc_async_pipelines.service import ServiceSettings, create_app

    monkeypatch.syspath_prepend(str(user_app))
    spec = load_pipeline("my_news.chains:build_headline_chain")
    llm = make_chat_model(ModelSettings(), base_url=embedded_server.base_url)
    app = create_app(llm, settings=ServiceSettings(), pipelines={"headline": spec})
    with serve(app) as base, httpx.Client(base_url=base, timeout=120) as client:
        listed = {p["name"]: p for p in client.get("/v1/pipelines").json()}
        assert set(listed["headline"]["input_schema"]["properties"]) == {"paper", "event"}
        body = {"input": {"paper": "a tabloid", "event": "a cat was elected mayor"}}
        events = []
        with client.stream("POST", "/v1/pipelines/headline/stream", json=body) as response:
            assert response.status_code == 200
            kind = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind:
                    events.append((kind, json.loads(line.split(":", 1)[1])))
    kinds = [k for k, _ in events]
    assert kinds.count("token") >= 3 and kinds[-1] == "end"
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert streamed.strip() and events[-1][1]["output"].strip() == streamed.strip()
