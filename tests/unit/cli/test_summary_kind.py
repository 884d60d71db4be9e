"""``pipelines run summary --kind``: the kind in each record, the retries in the summary."""

import json

import pytest
from langchain_core.messages import AIMessage

from lc_async_pipelines import cli
from tests.unit.cli.helpers import use_model
from tests.unit.fakes import FnChatModel

CHATS = [
    {"id": "c1", "text": "Amanda: I baked cookies.\nJerry: Sure!\nAmanda: I'll bring some."},
    {"id": "n1", "text": "The council voted on Tuesday to build a bridge, officials said. " * 4},
]


def chats(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CHATS))
    return path


def test_each_record_has_its_kind_and_the_summary_counts_off_task_retries(tmp_path, monkeypatch):
    calls = []

    async def model(messages, **_):
        calls.append(messages)
        # the dialogue's first reply is about the text; its retry (4 messages) and the news' are not
        meta = len(messages) == 2 and "conversation" in messages[-1].content
        text = "The document is an example of a chat." if meta else "Amanda bakes cookies."
        return AIMessage(content=text, response_metadata={"finish_reason": "stop"})

    use_model(monkeypatch, FnChatModel(fn=model))
    out = tmp_path / "o.jsonl"
    argv = ["run", "summary", "--kind", "auto", "--input", str(chats(tmp_path))]
    assert cli.main([*argv, "--output", str(out), "--concurrency", "1", "--max-words", "10"]) == 0
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["c1"]["notes"]["kind"] == "dialogue"
    assert records["n1"]["notes"]["kind"] == "news"
    assert all(r["notes"]["kind_guessed"] for r in records.values())
    assert all(r["output"] == "Amanda bakes cookies." for r in records.values())
    summary = json.loads((tmp_path / "o.jsonl.summary.json").read_text())
    retries = sum(r["notes"].get("off_task_retries", 0) for r in records.values())
    assert summary["off_task_retries"] == retries == 1
    assert records["c1"]["notes"]["off_task_retries"] == 1


def test_a_given_kind_is_used_and_noted_as_given(tmp_path, monkeypatch):
    async def model(messages, **_):
        assert "meeting transcript" in messages[-1].content
        return AIMessage(content="Amanda bakes.", response_metadata={"finish_reason": "stop"})

    use_model(monkeypatch, FnChatModel(fn=model))
    out = tmp_path / "o.jsonl"
    argv = ["run", "summary", "--kind", "meeting", "--input", str(chats(tmp_path))]
    assert cli.main([*argv, "--output", str(out), "--max-words", "2"]) == 0
    notes = [json.loads(line)["notes"] for line in out.read_text().splitlines()]
    assert notes == [{"kind": "meeting", "kind_guessed": False}] * 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["summary", "--kind", "bogus"], "argument --kind: invalid choice: 'bogus'"),
        (["story", "--kind", "news"], "--kind: pipeline 'story' takes no kind"),
    ],
)
def test_a_bad_kind_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    out = tmp_path / "o.jsonl"
    try:
        code = cli.main(["run", *argv, "--input", str(chats(tmp_path)), "--output", str(out)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and says in err
    assert not out.exists()


def test_the_ending_table_says_how_many_summaries_were_asked_for_again():
    from lc_async_pipelines.cli._ending import Ending, ending_rows

    ending = Ending(records="o.jsonl", summary_file="o.jsonl.summary.json", argv=["run"])
    base = {"done": 3, "failed": 0, "wall_s": 1.0}
    assert "off task" not in dict(ending_rows({**base, "off_task_retries": 0}, ending))
    rows = dict(ending_rows({**base, "off_task_retries": 2}, ending))
    assert rows["off task"] == "2 summaries asked for again"
