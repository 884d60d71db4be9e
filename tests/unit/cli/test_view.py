"""``pipelines view``: careless input is one line and exit 2, before anything is served."""

import json
import socket

import pytest

from lc_async_pipelines.cli import main


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    return err


def test_missing_output_suggests_the_run_beside_it(tmp_path, capsys):
    (tmp_path / "stories.jsonl").write_text("")
    (tmp_path / "stories.jsonl.manifest.json").write_text("{}")
    err = error_of(capsys, ["view", str(tmp_path / "storys.jsonl")])
    assert "no such run" in err and f"did you mean '{tmp_path / 'stories.jsonl'}'" in err


def test_a_table_output_is_read_from_its_records(tmp_path, capsys):
    (tmp_path / "reviews.csv.records.jsonl").write_text("")
    err = error_of(capsys, ["view", str(tmp_path / "review.csv")])
    assert f"did you mean '{tmp_path / 'reviews.csv'}'" in err


def test_a_folder(tmp_path, capsys):
    assert "is a folder" in error_of(capsys, ["view", str(tmp_path)])


def test_a_file_that_is_not_records(tmp_path, capsys):
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"name": "not a record"}) + "\n")
    err = error_of(capsys, ["view", str(notes)])
    assert "line 1 is not a record (no 'id', 'output', 'error')" in err
    text = tmp_path / "topics.txt"
    text.write_text("a lighthouse\n")
    assert "line 1 is not a record (not JSON)" in error_of(capsys, ["view", str(text)])


def test_a_port_in_use(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = error_of(capsys, ["view", str(out), "--port", str(port)])
    assert f"127.0.0.1:{port}: cannot listen (in use)" in err and "--port 0" in err


def test_beyond_loopback_needs_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PIPELINES_API_TOKEN", raising=False)
    monkeypatch.delenv("PIPELINES_ALLOW_OPEN", raising=False)
    out = tmp_path / "out.jsonl"
    out.write_text("")
    err = error_of(capsys, ["view", str(out), "--host", "0.0.0.0", "--port", "0"])
    assert "without PIPELINES_API_TOKEN" in err


@pytest.mark.parametrize("argv", [["view", "--help"]])
def test_help_names_the_command(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "OUTPUT" in capsys.readouterr().out
