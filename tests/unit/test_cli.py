import json
from contextlib import asynccontextmanager

import pytest

from lc_async_pipelines import cli
from tests.unit.fakes import FnChatModel, cycling_llm


@pytest.fixture
def fake_session(monkeypatch):
    @asynccontextmanager
    async def session(settings=None, **_):
        yield cycling_llm("A fine result.")

    monkeypatch.setattr(cli, "chat_model_session", session)


def test_run_writes_records_and_summary(tmp_path, fake_session, capsys):
    src = tmp_path / "topics.txt"
    src.write_text(
        "a magical forest\na futuristic city\na magical forest\nan underwater civilization\n"
    )
    out = tmp_path / "out" / "stories.jsonl"
    code = cli.main(["run", "story", "--input", str(src), "--output", str(out), "--limit", "2"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # records come in completion order
    assert sorted(r["input"] for r in records) == ["a futuristic city", "a magical forest"]
    assert all(r["output"] == "A fine result." and r["error"] is None for r in records)
    summary = json.loads((tmp_path / "out" / "stories.jsonl.summary.json").read_text())
    assert summary["done"] == 2 and summary["failed"] == 0
    assert '"summary"' in capsys.readouterr().err


def test_bad_input_path_exits_2(tmp_path, fake_session, capsys):
    code = cli.main(
        [
            "run",
            "summary",
            "--input",
            str(tmp_path / "x.xml"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ]
    )
    assert code == 2
    assert "unknown format" in capsys.readouterr().err


def test_failed_items_exit_1(tmp_path, fake_session):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "ok"}\n{"text": ""}\n')
    out = tmp_path / "o.jsonl"
    assert cli.main(["run", "summary", "--input", str(src), "--output", str(out)]) == 1
    assert len(out.read_text().splitlines()) == 2


def test_resume_skips_done_drops_partial_line_and_reruns_failed(tmp_path, monkeypatch):
    calls = []

    @asynccontextmanager
    async def session(settings=None, **_):
        from langchain_core.messages import AIMessage

        async def model(messages, **__):
            calls.append(messages[-1].content)
            return AIMessage(content="Done.")

        yield FnChatModel(fn=model)

    monkeypatch.setattr(cli, "chat_model_session", session)
    src = tmp_path / "topics.txt"
    src.write_text("t1\nt2\nt3\nt4\n")
    out = tmp_path / "o.jsonl"
    assert (
        cli.main(["run", "story", "--input", str(src), "--output", str(out), "--limit", "2"]) == 0
    )
    first = [json.loads(line) for line in out.read_text().splitlines()]
    # a failed record and a line cut by a kill -9
    failed = {
        **first[0],
        "id": "x",
        "input": "t3",
        "output": None,
        "error": {"type": "E", "message": "m"},
    }
    with out.open("a") as fh:
        fh.write(json.dumps(failed) + "\n" + '{"id": "partial", "outp')
    calls.clear()
    assert cli.main(["run", "story", "--input", str(src), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["input"] for r in records) == ["t1", "t2", "t3", "t4"]
    assert all(r["error"] is None for r in records)
    assert len(calls) == 2  # t1 and t2 were not run again


def test_restart_overwrites(tmp_path, fake_session):
    src = tmp_path / "topics.txt"
    src.write_text("t1\n")
    out = tmp_path / "o.jsonl"
    for _ in range(2):
        assert (
            cli.main(["run", "story", "--input", str(src), "--output", str(out), "--restart"]) == 0
        )
    assert len(out.read_text().splitlines()) == 1


def test_fallback_model_answers_when_main_fails(tmp_path, monkeypatch):
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class NamedModel(BaseChatModel):
        model_name: str = "main"

        @property
        def _llm_type(self) -> str:
            return "named-fake"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            if self.model_name == "main":
                raise RuntimeError("main model is down")
            return ChatResult(
                generations=[ChatGeneration(message=AIMessage(content=f"From {self.model_name}."))]
            )

    @asynccontextmanager
    async def session(settings=None, **_):
        yield NamedModel()

    monkeypatch.setattr(cli, "chat_model_session", session)
    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    out = tmp_path / "o.jsonl"
    args = ["run", "story", "--input", str(src), "--output", str(out), "--max-retries", "0"]
    assert cli.main(args) == 1
    assert json.loads(out.read_text())["error"]["message"] == "main model is down"
    assert cli.main([*args, "--restart", "--fallback-model", "backup"]) == 0
    assert json.loads(out.read_text())["output"] == "From backup."


def test_cache_answers_a_restarted_run_without_calls(tmp_path, monkeypatch, capsys):
    from langchain_core.messages import AIMessage

    calls = []

    async def model(messages, **__):
        calls.append(messages[-1].content)
        return AIMessage(content=f"Story number {len(calls)}.")

    @asynccontextmanager
    async def session(settings=None, **_):
        yield FnChatModel(fn=model)

    monkeypatch.setattr(cli, "chat_model_session", session)
    src = tmp_path / "topics.txt"
    src.write_text("t1\nt2\nt3\n")
    out, cache = tmp_path / "o.jsonl", tmp_path / "cache.sqlite"
    argv = ["run", "story", "--input", str(src), "--output", str(out), "--cache", str(cache)]
    assert cli.main(argv) == 0
    first = {json.loads(line)["input"]: json.loads(line)["output"] for line in out.open()}
    capsys.readouterr()
    assert cli.main([*argv, "--restart"]) == 0
    second = {json.loads(line)["input"]: json.loads(line)["output"] for line in out.open()}
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["summary"]
    assert len(calls) == 3
    assert second == first
    assert (summary["cache_hits"], summary["requests_sent"], summary["done"]) == (3, 0, 3)
