"""Inputs that cost without saying so (issue 22 point 8): a huge --prompt, a huge map-reduce row.

The prompt template is sent with every row, so its size counts toward
--max-input-tokens and the context window; a document that splits into more
than --max-chunks chunks is a RowError before any call; the dry run says how
many calls each item makes.
"""

import json

import pytest
from langchain_core.messages import AIMessage

from lc_async_pipelines import cli
from lc_async_pipelines.summary import DEFAULT_MAX_CHUNKS, build_auto_summary_chain
from tests.unit.cli.helpers import use_model
from tests.unit.fakes import FnChatModel

# The row that made 282 map-reduce calls: 1,000,000 characters of prose.
MILLION = ("The council met again on Tuesday and argued about the budget. " * 16_200)[:1_000_000]


def counting_model(monkeypatch):
    calls: list[str] = []

    async def model(messages, **_):
        calls.append(messages[-1].content)
        return AIMessage(content="A short summary.")

    use_model(monkeypatch, FnChatModel(fn=model))
    return calls


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_prompt_file_alone_over_max_input_tokens_exits_2_before_anything(
    tmp_path, monkeypatch, capsys
):
    calls = counting_model(monkeypatch)
    prompt = tmp_path / "big_prompt.txt"
    prompt.write_text("You are careful. " * 60_000 + "\nSummarize: {text}\n")  # 1 MB
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "short row"}\n')
    out = tmp_path / "o.jsonl"
    argv = ["run", "--prompt", str(prompt), "--input", str(rows), "--output", str(out)]
    for extra in ([], ["--dry-run"]):
        code = cli.main([*argv, "--max-input-tokens", "1000", *extra])
        err = capsys.readouterr().err
        assert code == 2 and not out.exists() and calls == []
        assert "template alone is about 291,4" in err and "--max-input-tokens is 1,000" in err


def test_the_template_counts_with_the_row_toward_max_input_tokens(tmp_path, monkeypatch):
    calls = counting_model(monkeypatch)
    prompt = tmp_path / "p.txt"
    prompt.write_text("Be brief. " * 1000 + "\nSummarize: {text}\n")  # about 2,860 tokens
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "x " * 1000}) + "\n" + json.dumps({"text": "ok"}) + "\n")
    out = tmp_path / "o.jsonl"
    argv = ["run", "--prompt", str(prompt), "--input", str(rows), "--output", str(out)]
    # the row alone (about 575 tokens) is well under 3,000: only with the prompt is it over
    assert cli.main([*argv, "--max-input-tokens", "3000"]) == 1
    by_line = {r["line"]: r for r in _records(out)}
    assert by_line[1]["calls"] == 0 and by_line[1]["error"]["type"] == "RowError"
    assert "with the prompt's 28" in by_line[1]["error"]["message"]
    assert by_line[2]["error"] is None and len(calls) == 1


def test_a_million_character_row_is_a_row_error_with_no_call_unless_max_chunks_is_raised(
    tmp_path, monkeypatch
):
    calls = counting_model(monkeypatch)
    rows = tmp_path / "long.txt"
    rows.write_text(MILLION + "\nA short document.\n")
    out = tmp_path / "o.jsonl"
    # "A short summary." is within 4 words ±30%: no call to lengthen it
    argv = ["run", "summary", "--input", str(rows), "--output", str(out), "--max-words", "4"]
    assert cli.main(argv) == 1
    long_one = next(r for r in _records(out) if r["line"] == 1)
    assert long_one["calls"] == 0 and long_one["error"]["type"] == "RowError"
    assert f"over the limit of {DEFAULT_MAX_CHUNKS}" in long_one["error"]["message"]
    assert len(calls) == 1  # the short document's

    calls.clear()
    assert cli.main([*argv, "--restart", "--max-chunks", "300"]) == 0
    assert len(calls) > 200  # what the limit kept from being spent unasked


def test_max_chunks_on_a_pipeline_without_chunks_is_exit_2(tmp_path, fake_session, capsys):
    rows = tmp_path / "t.txt"
    rows.write_text("a topic\n")
    argv = ["run", "story", "--input", str(rows), "--output", str(tmp_path / "o.jsonl")]
    assert cli.main([*argv, "--max-chunks", "5"]) == 2
    assert "--max-chunks: pipeline 'story' takes no max_chunks" in capsys.readouterr().err


def test_the_dry_run_shows_calls_per_item_and_why_a_row_would_fail(tmp_path, capsys):
    rows = tmp_path / "docs.txt"
    medium = "The tide came in. " * 3_000  # about 15 chunks
    rows.write_text(f"A short document.\n{medium}\n{MILLION}\n")
    argv = ["run", "summary", "--input", str(rows), "--output", str(tmp_path / "o.jsonl")]
    assert cli.main([*argv, "--dry-run", "--embedded"]) == 0
    printed = capsys.readouterr()
    estimate = json.loads(printed.out)["estimate"]
    assert estimate["items"] == 2 and estimate["row_errors"] == 1
    assert estimate["most_calls_line"] == 2 and estimate["most_calls"] > 10
    assert f"at most {estimate['most_calls']} (line 2)" in printed.err
    assert "line 3: the document splits into" in printed.err


async def test_max_chunks_is_checked_before_any_call():
    calls = []

    async def model(messages, **_):
        calls.append(1)
        return AIMessage(content="s.")

    from lc_async_pipelines.errors import ConfigurationError, RowError

    chain = build_auto_summary_chain(FnChatModel(fn=model), max_chunks=3)
    with pytest.raises(RowError, match="splits into"):
        await chain.ainvoke("word " * 10_000)
    assert calls == []
    with pytest.raises(ConfigurationError):
        build_auto_summary_chain(FnChatModel(fn=model), max_chunks=0)
