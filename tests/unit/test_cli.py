import json
from contextlib import asynccontextmanager

import pytest

from pipelines import cli
from tests.unit.fakes import cycling_llm


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
    assert [r["input"] for r in records] == ["a magical forest", "a futuristic city"]
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
