"""``pipelines run``: records, resume, restart, checks before any model starts, exit codes."""

import json
from contextlib import asynccontextmanager

import pytest

from lc_async_pipelines import cli
from lc_async_pipelines import session as session_module
from tests.unit.cli.helpers import use_model
from tests.unit.fakes import FnChatModel


def test_run_writes_records_and_summary(tmp_path, fake_session, capsys):
    src = tmp_path / "topics.txt"
    src.write_text(
        "a magical forest\na futuristic city\na magical forest\nan underwater civilization\n"
    )
    out = tmp_path / "out" / "stories.jsonl"
    argv = ["run", "story", "--input", str(src), "--output", str(out), "--limit", "2", "--json"]
    code = cli.main(argv)
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # records come in completion order
    assert sorted(r["input"] for r in records) == ["a futuristic city", "a magical forest"]
    assert all(r["output"] == "A fine result." and r["error"] is None for r in records)
    summary = json.loads((tmp_path / "out" / "stories.jsonl.summary.json").read_text())
    assert summary["done"] == 2 and summary["failed"] == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["summary"] == summary  # --json: the same summary on stdout
    assert "  done     2\n" in printed.err and "{" not in printed.err  # the table, no JSON


def test_bad_input_path_exits_2(tmp_path, fake_session, capsys):
    (tmp_path / "x.xml").write_text("<a/>")
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

    monkeypatch.setattr(session_module, "chat_model_session", session)
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

    use_model(monkeypatch, NamedModel())
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

    use_model(monkeypatch, FnChatModel(fn=model))
    src = tmp_path / "topics.txt"
    src.write_text("t1\nt2\nt3\n")
    out, cache = tmp_path / "o.jsonl", tmp_path / "cache.sqlite"
    argv = ["run", "story", "--input", str(src), "--output", str(out), "--cache", str(cache)]
    assert cli.main(argv) == 0
    first = {json.loads(line)["input"]: json.loads(line)["output"] for line in out.open()}
    capsys.readouterr()
    code = cli.main([*argv, "--restart", "--json"])
    assert code == 0, out.read_text()
    second = {json.loads(line)["input"]: json.loads(line)["output"] for line in out.open()}
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert len(calls) == 3
    assert second == first
    assert (summary["cache_hits"], summary["requests_sent"], summary["done"]) == (3, 0, 3)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prompt_file_with_two_variables_runs_over_csv(tmp_path, monkeypatch):
    from langchain_core.messages import AIMessage

    seen = []

    async def model(messages, **__):
        seen.append(messages[-1].content)
        return AIMessage(content="Done.")

    use_model(monkeypatch, FnChatModel(fn=model))
    prompt = tmp_path / "greet.txt"
    prompt.write_text("Write to {name} who lives in {city}.")
    rows = tmp_path / "rows.csv"
    rows.write_bytes("\ufeffname,city,age\nAda,London,36\nGrace,Arlington,85\n".encode())
    out = tmp_path / "o.jsonl"
    code = cli.main(["run", "--prompt", str(prompt), "--input", str(rows), "--output", str(out)])
    assert code == 0
    assert sorted(seen) == [
        "Write to Ada who lives in London.",
        "Write to Grace who lives in Arlington.",
    ]
    assert {r["input"]["name"] for r in _records(out)} == {"Ada", "Grace"}


def test_prompt_variable_missing_from_the_first_row_exits_2_naming_fields(
    tmp_path, fake_session, capsys
):
    prompt = tmp_path / "p.txt"
    prompt.write_text("About {topic} for {audience}.")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"topic": "tides", "reader": "kids"}\n')
    code = cli.main(
        [
            "run",
            "--prompt",
            str(prompt),
            "--input",
            str(rows),
            "--output",
            str(tmp_path / "o.jsonl"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "'audience'" in err and "topic, reader" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_later_row_missing_a_variable_is_its_own_error_record(tmp_path, fake_session):
    prompt = tmp_path / "p.txt"
    prompt.write_text("About {topic} for {audience}.")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"topic": "tides", "audience": "kids"}\n{"topic": "moons"}\n')
    out = tmp_path / "o.jsonl"
    assert (
        cli.main(["run", "--prompt", str(prompt), "--input", str(rows), "--output", str(out)]) == 1
    )
    bad = next(r for r in _records(out) if r["error"])
    assert bad["error"]["type"] == "RowError"
    assert "'audience'" in bad["error"]["message"] and "topic" in bad["error"]["message"]


def test_wrong_field_exits_2_before_any_model_and_lists_the_fields(tmp_path, monkeypatch, capsys):
    @asynccontextmanager
    async def session(settings=None, **_):
        raise AssertionError("no model may start for a bad --field")
        yield

    monkeypatch.setattr(session_module, "chat_model_session", session)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"headline": "x", "body": "y"}\n')
    argv = ["run", "summary", "--input", str(rows), "--output", str(tmp_path / "o.jsonl")]
    assert cli.main([*argv, "--field", "article"]) == 2
    err = capsys.readouterr().err
    assert "'article'" in err and "headline, body" in err


def test_user_factory_target_runs(tmp_path, fake_session, monkeypatch):
    pkg = tmp_path / "app"
    pkg.mkdir()
    (pkg / "my_chains.py").write_text(
        "from langchain_core.output_parsers import StrOutputParser\n"
        "from langchain_core.prompts import ChatPromptTemplate\n\n"
        "def build(llm, *, style: str = 'plain'):\n"
        "    '''Shout a topic.'''\n"
        "    return ChatPromptTemplate.from_template('Say {topic}') | llm | StrOutputParser()\n"
    )
    monkeypatch.chdir(pkg)
    monkeypatch.syspath_prepend(str(pkg))
    rows = pkg / "rows.jsonl"
    rows.write_text('{"topic": "a"}\n{"topic": "b"}\n')
    out = pkg / "o.jsonl"
    assert cli.main(["run", "my_chains:build", "--input", str(rows), "--output", str(out)]) == 0
    assert [r["output"] for r in _records(out)] == ["A fine result.", "A fine result."]


def _ready_module(tmp_path, monkeypatch, name, body):
    pkg = tmp_path / "app"
    pkg.mkdir()
    (pkg / f"{name}.py").write_text(
        "import asyncio\n"
        "from langchain_core.messages import AIMessage\n"
        "from langchain_core.output_parsers import StrOutputParser\n"
        "from langchain_core.prompts import ChatPromptTemplate\n"
        "from langchain_core.runnables import RunnableLambda\n"
        "from tests.unit.fakes import ConcurrencyProbe, FnChatModel\n\n" + body
    )
    monkeypatch.chdir(pkg)
    monkeypatch.syspath_prepend(str(pkg))
    rows = pkg / "rows.txt"
    rows.write_text("".join(f"topic {i}\n" for i in range(6)))
    return rows, pkg / "o.jsonl"


def test_a_ready_runnable_s_own_model_runs_under_the_run_s_limits(tmp_path, monkeypatch):
    rows, out = _ready_module(
        tmp_path,
        monkeypatch,
        "ready_chains",
        "PROBE = ConcurrencyProbe(delay_s=0.01)\n"
        "READY = ChatPromptTemplate.from_template('Say {topic}') | FnChatModel(fn=PROBE)"
        " | StrOutputParser()\n",
    )
    # the session's own model is not the one called (no embedded server needed here)
    use_model(monkeypatch, FnChatModel(fn=lambda m, **k: pytest.fail("the session's model")))
    argv = ["run", "ready_chains:READY", "--input", str(rows), "--output", str(out)]
    assert cli.main([*argv, "--concurrency", "6", "--max-in-flight", "1"]) == 0
    import ready_chains

    assert [r["output"] for r in _records(out)] == ["Done."] * 6
    assert ready_chains.PROBE.peak == 1  # --max-in-flight reached the Runnable's own model


def test_a_ready_runnable_whose_model_is_out_of_reach_exits_2_before_writing(
    tmp_path, monkeypatch, capsys
):
    rows, out = _ready_module(
        tmp_path,
        monkeypatch,
        "hidden_chains",
        "MODEL = FnChatModel(fn=lambda m, **k: asyncio.sleep(0, AIMessage('x')))\n"
        "READY = RunnableLambda(lambda topic: MODEL.invoke(topic))\n",
    )
    argv = ["run", "hidden_chains:READY", "--input", str(rows), "--output", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "factory" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope", "--input", "x.txt", "--output", "o.jsonl"], "no pipeline 'nope'"),
        (["run", "no_such_module:f", "--input", "x.txt", "--output", "o.jsonl"], "cannot import"),
        (["run", "json:dumps", "--input", "x.txt", "--output", "o.jsonl"], "the factory failed"),
        (
            ["run", "story", "--prompt", "p.txt", "--input", "x.txt", "--output", "o.jsonl"],
            "not both",
        ),
        (
            ["run", "story", "--schema", "s.json", "--input", "x.txt", "--output", "o.jsonl"],
            "--schema goes with --prompt",
        ),
        (
            ["run", "summary", "--outline", "--input", "x.txt", "--output", "o.jsonl"],
            "takes no outline",
        ),
    ],
)
def test_bad_targets_and_combinations_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("topic\n")
    (tmp_path / "p.txt").write_text("{topic}\n")  # files that exist: the combination is wrong
    (tmp_path / "s.json").write_text('{"type": "object", "properties": {"a": {}}}')
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_schema_gives_json_objects(tmp_path, monkeypatch):
    from langchain_core.messages import AIMessage

    replies = iter(
        ['{"topic": "tides", "tone": "cheerful"}', '{"topic": "tides", "tone": "neutral"}']
    )

    async def model(messages, **__):
        return AIMessage(content=next(replies))

    use_model(monkeypatch, FnChatModel(fn=model))
    prompt = tmp_path / "p.txt"
    prompt.write_text("Analyse: {text}")
    schema = tmp_path / "analysis.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "topic": {"type": "string"},
                    "tone": {"enum": ["negative", "neutral", "positive"]},
                },
                "required": ["topic", "tone"],
            }
        )
    )
    rows = tmp_path / "rows.txt"
    rows.write_text("The tide came in.\n")
    out = tmp_path / "o.jsonl"
    argv = ["run", "--prompt", str(prompt), "--schema", str(schema), "--input", str(rows)]
    assert cli.main([*argv, "--output", str(out)]) == 0
    [record] = _records(out)
    # the first reply broke the schema (tone), so the item was retried
    assert record["output"] == {"topic": "tides", "tone": "neutral"} and record["attempts"] == 2


def test_a_file_that_is_not_records_is_refused_and_left_as_it_was(tmp_path, fake_session, capsys):
    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nline two\n")
    before = notes.read_bytes()
    for extra in ([], ["--restart"]):
        argv = ["run", "story", "--input", str(src), "--output", str(notes), *extra]
        assert cli.main(argv) == 2
        assert "not a record" in capsys.readouterr().err
        assert notes.read_bytes() == before


def test_records_of_another_pipeline_are_refused(tmp_path, fake_session, capsys):
    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    out = tmp_path / "o.jsonl"
    assert cli.main(["run", "story", "--input", str(src), "--output", str(out)]) == 0
    assert cli.main(["run", "summary", "--input", str(src), "--output", str(out)]) == 2
    assert "another run" in capsys.readouterr().err


def test_restart_keeps_the_old_records_as_a_backup(tmp_path, fake_session, capsys):
    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    out = tmp_path / "o.jsonl"
    argv = ["run", "story", "--input", str(src), "--output", str(out)]
    assert cli.main(argv) == 0
    first = out.read_text()
    assert cli.main([*argv, "--restart"]) == 0
    [backup] = tmp_path.glob("o.jsonl.bak-*[0-9]")
    assert backup.read_text() == first and "moved to" in capsys.readouterr().err


def test_a_second_run_on_the_same_output_exits_2_at_once(tmp_path, fake_session, capsys):
    from lc_async_pipelines.runner.records import RunManifest, open_run

    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    out = tmp_path / "o.jsonl"
    holder = RunManifest.new(pipeline="story", fingerprint="x", model="m", input=src)
    with open_run(out, holder, restart=False):
        assert cli.main(["run", "story", "--input", str(src), "--output", str(out)]) == 2
    assert "in use by another run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ("o.jsonl", "is the --input or --output file"),
        ("t.txt", "is the --input or --output file"),
        ("folder", "is a folder"),
        ("notes.txt", "is not an SQLite file"),
    ],
)
def test_bad_cache_paths_exit_2_before_anything_starts(
    tmp_path, fake_session, capsys, cache, message
):
    (tmp_path / "t.txt").write_text("topic\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a database")
    argv = [
        "run",
        "story",
        "--input",
        str(tmp_path / "t.txt"),
        "--output",
        str(tmp_path / "o.jsonl"),
    ]
    assert cli.main([*argv, "--cache", str(tmp_path / cache)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_model_name_with_the_embedded_model_exits_2(tmp_path, capsys, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("topic\n")
    assert (
        cli.main(["run", "story", "--input", "t.txt", "--output", "o.jsonl", "-m", "gpt-4o"]) == 2
    )
    assert "-m gpt-4o: no endpoint is configured" in capsys.readouterr().err


def test_embedded_inputs_over_the_context_window_become_row_errors(tmp_path, fake_session):
    src = tmp_path / "t.jsonl"
    src.write_text('{"topic": "short"}\n' + json.dumps({"topic": "word " * 20_000}) + "\n")
    out = tmp_path / "o.jsonl"
    assert cli.main(["run", "story", "--input", str(src), "--output", str(out), "--embedded"]) == 1
    by_input = {r["input"][:5]: r for r in _records(out)}
    assert by_input["short"]["error"] is None
    big = by_input["word "]
    assert big["error"]["type"] == "RowError" and "4096" in big["error"]["message"]
    assert big["calls"] == 0


def test_duplicates_and_collisions_are_counted_in_the_summary(tmp_path, fake_session):
    src = tmp_path / "t.jsonl"
    src.write_text(
        '{"id": "a", "topic": "x"}\n{"id": "a", "topic": "x"}\n{"id": "a", "topic": "y"}\n'
    )
    out = tmp_path / "o.jsonl"
    assert cli.main(["run", "story", "--input", str(src), "--output", str(out)]) == 1
    summary = json.loads((tmp_path / "o.jsonl.summary.json").read_text())
    assert summary["session"]["duplicates_skipped"] == 1
    assert summary["session"]["id_collisions"] == 1
    assert len(_records(out)) == 2  # the first row, and the collision's error record


def test_rows_that_differ_only_in_fields_the_prompt_does_not_read_run_once(tmp_path, monkeypatch):
    from langchain_core.messages import AIMessage

    seen = []

    async def model(messages, **__):
        seen.append(messages[-1].content)
        return AIMessage(content="Done.")

    use_model(monkeypatch, FnChatModel(fn=model))
    prompt = tmp_path / "p.txt"
    prompt.write_text("Summarize {article}")
    rows = tmp_path / "news.jsonl"
    rows.write_text(
        '{"article_id": "a1", "article": "Text one.", "summary": "first writer"}\n'
        '{"article_id": "a1", "article": "Text one.", "summary": "second writer"}\n'
    )
    out = tmp_path / "o.jsonl"
    argv = ["run", "--prompt", str(prompt), "--input", str(rows), "--id-field", "article_id"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    [record] = _records(out)
    assert record["input"] == {"article": "Text one."} and len(seen) == 1


def test_a_password_in_the_endpoint_url_stays_out_of_the_manifest(
    tmp_path, fake_session, monkeypatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw-S3cretValue99@127.0.0.1:9/v1")
    monkeypatch.setenv("PIPELINES_MODEL", "m")
    src = tmp_path / "t.txt"
    src.write_text("topic\n")
    out = tmp_path / "o.jsonl"
    assert cli.main(["run", "story", "--input", str(src), "--output", str(out)]) == 0
    manifest = (tmp_path / "o.jsonl.manifest.json").read_text()
    assert "pw-S3cretValue99" not in manifest and "127.0.0.1:9" in manifest


def test_the_manifest_says_the_items_and_the_budget_for_pipelines_view(tmp_path, fake_session):
    src = tmp_path / "t.txt"
    src.write_text("one\ntwo\nthree\n")
    out = tmp_path / "o.jsonl"
    argv = ["run", "story", "--input", str(src), "--output", str(out), "--rpm", "60"]
    assert cli.main([*argv, "--limit", "2"]) == 0
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["items"] == 2  # the input's 3, cut to --limit
    assert manifest["limits"] == {"rpm": 60.0}
    assert manifest["session_started_at"] == manifest["created_at"]


def test_a_stray_quote_is_one_error_record_and_resume_keeps_ids(tmp_path, fake_session):
    """Issue 22, point 4: `1,"unterminated` merged 3 CSV rows into 1 item, exit 0."""
    src = tmp_path / "rows.csv"
    src.write_text('id,text\n1,"unterminated\n2,b\n3,c\n')
    out = tmp_path / "o.jsonl"
    argv = ["run", "summary", "--input", str(src), "--output", str(out)]
    assert cli.main(argv) == 1
    first = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(first) == ["2", "3", "line-1"]
    assert first["line-1"]["error"]["type"] == "RowError"
    assert first["line-1"]["error"]["message"].startswith("line 1: a quoted field never closes")
    assert (first["2"]["input"], first["3"]["input"]) == ("b", "c")
    assert cli.main(argv) == 1  # resume: the done rows are kept, the bad one fails again
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in again) == ["2", "3", "line-1"]
    kept = sorted((r for r in again if r["id"] != "line-1"), key=lambda r: r["id"])
    assert kept == [first["2"], first["3"]]  # as written the first time, not run again


@pytest.mark.parametrize("how", ["hard link", "symlink"])
def test_a_second_run_through_a_link_to_the_output_exits_2_in_one_line(
    tmp_path, fake_session, capsys, how
):
    """Issue 22, point 6: a run through a hard link got past the lock; both wrote and paid."""
    src = tmp_path / "topics.txt"
    src.write_text("t1\nt2\n")
    out, link = tmp_path / "o.jsonl", tmp_path / "link.jsonl"
    argv = ["run", "story", "--input", str(src)]
    assert cli.main([*argv, "--output", str(out), "--limit", "1"]) == 0
    if how == "hard link":
        link.hardlink_to(out)
    else:
        link.symlink_to(out)
    from lc_async_pipelines.runner.records import open_run
    from lc_async_pipelines.runner.records.manifest import read_manifest

    capsys.readouterr()
    # The first run again, in progress (a flock refuses another open file in-process too).
    with open_run(out, read_manifest(out), restart=False):
        before = out.read_bytes()
        assert cli.main([*argv, "--output", str(link)]) == 2
        assert out.read_bytes() == before
    err = capsys.readouterr().err.strip()
    assert (
        "\n" not in err and err.startswith("pipelines: error: ") and "in use by another run" in err
    )


class _FullDisk:
    """The records file on a disk that fills after ``room`` characters: ENOSPC mid-line."""

    def __init__(self, fh, room):
        self._fh, self._room = fh, room

    def write(self, text):
        import errno
        import os

        if len(text) > self._room:
            self._fh.write(text[: self._room])  # the disk takes what fits: a line cut short
            self._fh.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(text)
        return self._fh.write(text)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def test_a_full_disk_stops_the_run_in_one_line_exit_4_and_resume_completes(
    tmp_path, fake_session, capsys, monkeypatch
):
    """Issue 22, point 9: a full disk mid-run ended in a traceback (exit 1)."""
    from pathlib import Path

    src = tmp_path / "topics.txt"
    src.write_text("".join(f"topic {i}\n" for i in range(30)))
    out = tmp_path / "o.jsonl"
    argv = ["run", "story", "--input", str(src), "--output", str(out)]
    real_open = Path.open

    def open_on_a_small_disk(self, mode="r", *args, **kwargs):
        fh = real_open(self, mode, *args, **kwargs)
        return _FullDisk(fh, room=2500) if self == out and mode == "a" else fh

    monkeypatch.setattr(Path, "open", open_on_a_small_disk)
    assert cli.main(argv) == 4
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"pipelines: error: {out}: cannot be written (No space left on device); stopped, the "
        "records written are kept: make room and run the same command again to resume"
    )
    assert "Traceback" not in err
    kept = out.read_text()
    whole = kept.count("\n")
    assert 0 < whole < 30 and not kept.endswith("\n")  # the lines that fitted, one cut short
    monkeypatch.setattr(Path, "open", real_open)  # room again
    assert cli.main(argv) == 0
    assert f"resuming: {whole} items already done" in capsys.readouterr().err
    ids = [r["id"] for r in _records(out)]
    assert len(ids) == len(set(ids)) == 30
