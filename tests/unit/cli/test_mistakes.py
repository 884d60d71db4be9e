"""Careless input: one line, exit 2, the closest name, and the command's own --help."""

import json

import pytest

from lc_async_pipelines import cli


def rows(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [{"doc_id": "a1", "text": "hello"}, {"doc_id": "a2", "text": "world"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def run(tmp_path, capsys, *argv):
    """Exit code (SystemExit or return) and the one line of stderr."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err  # one line
    assert not (tmp_path / "o.jsonl").exists()  # nothing written
    return code, err


def test_a_mistyped_command_names_the_closest(tmp_path, capsys):
    code, err = run(tmp_path, capsys, "rnu")
    assert code == 2
    assert "no command 'rnu' (did you mean 'run'?)" in err and "(see pipelines --help)" in err


def test_a_mistyped_flag_is_reported_by_its_command_with_the_closest(tmp_path, capsys):
    docs = rows(tmp_path)
    argv = ["run", "summary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "--max_words", "40")
    assert code == 2
    assert err.startswith("pipelines run: error: unrecognized arguments: --max_words 40")
    assert "(did you mean '--max-words'?)" in err and err.endswith("(see pipelines run --help)")


def test_a_mistyped_pipeline_names_the_closest(tmp_path, capsys):
    docs = rows(tmp_path)
    argv = ["run", "sumary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and "no pipeline 'sumary' (did you mean 'summary'?)" in err


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_mistyped_field_names_the_closest(tmp_path, capsys, dry_run):
    docs = rows(tmp_path)
    argv = ["run", "summary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "--field", "txt", *dry_run)
    assert code == 2 and "missing field 'txt' (did you mean 'text'?)" in err


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_mistyped_id_field_is_caught_not_hashed(tmp_path, capsys, dry_run):
    docs = rows(tmp_path)
    argv = ["run", "summary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "--id-field", "docid", *dry_run)
    assert code == 2
    assert "--id-field docid:" in err and "(did you mean 'doc_id'?)" in err
    assert "the row has: doc_id, text" in err


def test_an_id_field_on_lines_of_text_is_refused(tmp_path, capsys):
    topics = tmp_path / "t.txt"
    topics.write_text("a fox\na hen\n")
    argv = ["run", "story", "--input", str(topics), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "--id-field", "id")
    assert code == 2 and "has lines of text, not fields" in err


def test_a_usage_error_points_to_its_command_s_help(tmp_path, capsys):
    argv = ["run", "story", "--input", str(tmp_path / "nope.txt"), "--output", "o.jsonl"]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and err.endswith("(see pipelines run --help)")


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("flag", ["--input", "--prompt", "--sources"])
def test_a_device_or_a_pipe_is_refused_before_it_is_read(tmp_path, capsys, kind, flag):
    """Issue 22, point 3: /dev/zero was read for ever (3.2 GB in 10 s), a FIFO hung."""
    import os

    if kind == "device":
        special = "/dev/zero"
    else:
        special = str(tmp_path / "pipe")
        os.mkfifo(special)
    topics = tmp_path / "t.txt"
    topics.write_text("a fox\n")
    out = str(tmp_path / "o.jsonl")
    argv = {
        "--input": ["run", "story", "--input", special, "--output", out],
        "--prompt": ["run", "--prompt", special, "--input", str(topics), "--output", out],
        "--sources": ["news", "--sources", special, "--output", out],
    }[flag]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and f"{flag} {special}: not a regular file" in err


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
@pytest.mark.parametrize(
    ("name", "body", "said"),
    [
        ("empty.jsonl", b"", "no items (an empty or blank file, or a header with no rows)"),
        ("header.csv", b"id,text\n\n", "no items (an empty or blank file"),
        ("nul.csv", b"\x00" * 100_000, "the header row (line 1) contains NUL bytes"),
    ],
)
def test_an_input_of_no_items_says_so_and_exits_2(tmp_path, capsys, name, body, said, dry_run):
    """Issue 22, point 4: a 100 KB all-NUL CSV ran 0 items and exited 0."""
    src = tmp_path / name
    src.write_bytes(body)
    argv = ["run", "summary", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, *dry_run)
    assert code == 2 and said in err


@pytest.mark.parametrize("where", ["module", "factory", "schema"])
def test_a_target_that_calls_sys_exit_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, where):
    """Issue 22, point 9: a target module calling sys.exit(0) on import ended exit 0, nothing done."""
    name = f"quits_in_{where}"
    body = {
        "module": "import sys\nsys.exit(0)\n",
        "factory": "import sys\ndef build(llm):\n    sys.exit(0)\n",
        "schema": "import sys\nsys.exit(0)\n",
    }[where]
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "p.txt").write_text("Say {text}\n")
    docs = rows(tmp_path)
    target = (
        ["--prompt", "p.txt", "--schema", f"{name}:Model"]
        if where == "schema"
        else [name + ":build"]
    )
    argv = ["run", *target, "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and err.startswith("pipelines: error: ") and "sys.exit(0)" in err


@pytest.mark.parametrize("levels", [5000, 60])
def test_a_schema_nested_too_deep_is_one_line_and_exit_2(tmp_path, capsys, levels):
    """Issue 22, point 9: a --schema nested 5,000 deep ended in a RecursionError traceback."""
    schema = '{"type": "string"}'
    for _ in range(levels):  # each level an object holding the next: two JSON levels
        schema = '{"type": "object", "properties": {"a": ' + schema + "}}"
    (tmp_path / "deep.json").write_text(schema)
    (tmp_path / "p.txt").write_text("Say {text}\n")
    argv = ["run", "--prompt", str(tmp_path / "p.txt"), "--schema", str(tmp_path / "deep.json")]
    argv += ["--input", str(rows(tmp_path)), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and "deep.json: nested " in err and " than 100 levels" in err


@pytest.mark.parametrize(
    ("flag", "length", "said"),
    [
        ("--output", 300, "the file name is 300 bytes; at most 216 (the files beside it add 39)"),
        ("--output", 250, "the file name is 250 bytes; at most 216"),  # its sidecars: 264
        ("--input", 300, "the file name is 300 bytes; at most 255"),
        ("--output-folder", 300, "--output: a folder name of 300 bytes; at most 255"),
    ],
)
def test_a_name_too_long_for_the_file_system_is_one_line_and_exit_2(
    tmp_path, capsys, flag, length, said
):
    """Issue 22, point 9: an --output name over 255 characters ended in a traceback."""
    long = "o" * (length - len(".jsonl")) + ".jsonl"
    docs, out = rows(tmp_path), tmp_path / "o.jsonl"
    if flag == "--output":
        out = tmp_path / long
    elif flag == "--input":
        docs = tmp_path / long
    else:
        out = tmp_path / ("d" * length) / "o.jsonl"
    for dry_run in [], ["--dry-run"]:
        argv = ["run", "summary", "--input", str(docs), "--output", str(out), *dry_run]
        code, err = run(tmp_path, capsys, *argv)
        assert code == 2 and said in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]  # nothing written


def test_a_short_service_token_stops_serve_in_one_line_that_keeps_its_words(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no .env of the project's
    monkeypatch.setenv("PIPELINES_API_TOKEN", "short-tok")
    code, err = run(tmp_path, capsys, "serve", "--port", "0")
    assert code == 2
    assert "PIPELINES_API_TOKEN is not valid: must be at least 16 characters" in err
    assert "short-tok" not in err


def test_a_trace_url_where_no_collector_answers_is_one_line_before_anything_runs(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["run", "summary", "--input", str(rows(tmp_path)), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "--trace", f"http://127.0.0.1:{port}")
    assert code == 2
    assert f"--trace http://127.0.0.1:{port}: no collector answers there" in err


@pytest.mark.parametrize("batch", [[], ["--batch-api"]])
def test_an_anthropic_model_without_its_key_is_one_line_before_any_item(
    tmp_path, capsys, monkeypatch, batch
):
    # the anthropic client raised a TypeError at the first request: a traceback with
    # --batch-api, every item an error record without
    pytest.importorskip("langchain_anthropic")
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    docs = rows(tmp_path)
    argv = ["run", "summary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv, "-m", "anthropic:claude-haiku-4-5", *batch)
    assert code == 2
    assert "anthropic:claude-haiku-4-5" in err and "ANTHROPIC_API_KEY" in err


@pytest.mark.parametrize("command", [["invoke", "summary", "some text"], ["serve", "--port", "1"]])
def test_invoke_and_serve_of_an_anthropic_model_without_its_key_say_so(
    tmp_path, capsys, monkeypatch, command
):
    pytest.importorskip("langchain_anthropic")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, err = run(tmp_path, capsys, *command, "-m", "anthropic:claude-haiku-4-5")
    assert code == 2 and "ANTHROPIC_API_KEY" in err


def test_a_batch_left_in_flight_is_not_sent_again_per_request(tmp_path, capsys):
    # killed while its batch ran, then the same command without --batch-api: the 20
    # items were sent at the standard price while the batch (paid once it ends) was lost
    docs = rows(tmp_path)
    entry = {"id": "msgbatch_1", "provider": "anthropic", "status": "in_progress",
             "custom_ids": ["a-0"]}  # fmt: skip
    state = tmp_path / "o.jsonl.batches.json"
    state.write_text(json.dumps({"format": 1, "batches": [entry]}))
    argv = ["run", "summary", "--input", str(docs), "--output", str(tmp_path / "o.jsonl")]
    code, err = run(tmp_path, capsys, *argv)
    assert code == 2 and "1 batch(es)" in err and "--batch-api" in err
    from lc_async_pipelines.runner.batch import batches_in_flight

    entry["status"] = "ended"  # collected or not, nothing more is paid: a resume may go on
    state.write_text(json.dumps({"format": 1, "batches": [entry]}))
    assert batches_in_flight(state) == 0


def test_a_batch_left_in_flight_is_waited_on_by_a_batch_lane(tmp_path):
    # --lanes batch,... collects an earlier session's batch (OUTPUT.lanes.json): not refused
    import argparse

    from lc_async_pipelines.cli._checks import UsageError
    from lc_async_pipelines.cli.commands._run_plan import _check_batches_in_flight

    entry = {"id": "batch_1", "provider": "openai", "status": "in_progress", "custom_ids": ["a"]}
    (tmp_path / "o.jsonl.batches.json").write_text(json.dumps({"format": 1, "batches": [entry]}))
    args = argparse.Namespace(
        output=tmp_path / "o.jsonl", batch_api=False, restart=False, lanes=("batch", "standard")
    )
    _check_batches_in_flight(args)  # returns: the batch lane waits on it
    args.lanes = ("flex", "standard")
    with pytest.raises(UsageError, match="still in flight"):
        _check_batches_in_flight(args)
