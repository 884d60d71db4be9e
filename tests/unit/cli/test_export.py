"""``pipelines run --output x.csv|x.parquet`` and ``pipelines export``: tables, and wrong paths."""

import csv
import importlib.util
import json

import pytest

from lc_async_pipelines import cli
from lc_async_pipelines.runner.records import RunManifest, lock_path, open_run

pq = pytest.importorskip("pyarrow.parquet")


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("doc_id,topic,shelf\nd1,a forest,A\nd2,a city,B\nd3,,C\n")
    return path


def run(docs, out, *extra):
    return cli.main(["run", "story", "--input", str(docs), "--output", str(out),
                     "--id-field", "doc_id", *extra])  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_run_to_a_table_then_again_resumes(tmp_path, docs, fake_session, capsys, suffix):
    out = tmp_path / f"o{suffix}"
    assert run(docs, out) == 1  # d3 has no topic: a failed row
    assert run(docs, out) == 1  # resumed: d3 runs again, and fails again
    rows = read_csv(out) if suffix == ".csv" else pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["d1", "d2", "line-3"]
    assert [r["shelf"] for r in rows] == ["A", "B", "C"]
    assert rows[0]["output"] == "A fine result." and rows[2]["error_class"] == "RowError"
    err = capsys.readouterr().err
    assert f"wrote {out}: 3 rows" in err and "resuming: 2 items already done" in err
    assert len((tmp_path / f"o{suffix}.records.jsonl").read_text().splitlines()) == 3


def test_run_to_an_unwritten_table_format_exits_2(tmp_path, docs, fake_session, capsys):
    assert run(docs, tmp_path / "o.xlsx") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ".xlsx is not written; give .jsonl" in err
    assert not (tmp_path / "o.xlsx").exists()


def test_run_to_parquet_without_pyarrow_names_the_extra(tmp_path, docs, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    assert run(docs, tmp_path / "o.parquet") == 2
    assert "pip install 'lc-async-pipelines[parquet]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [docs]


@pytest.fixture
def finished(tmp_path, docs, fake_session, capsys):
    out = tmp_path / "o.jsonl"
    run(docs, out)
    capsys.readouterr()
    return out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_a_finished_run(tmp_path, finished, capsys, suffix):
    to = tmp_path / "sub" / f"t{suffix}"
    assert cli.main(["export", str(finished), "--to", str(to)]) == 0
    rows = read_csv(to) if suffix == ".csv" else pq.read_table(to).to_pylist()
    assert [(r["id"], r["topic"], r["error_class"] or "") for r in rows] == [
        ("d1", "a forest", ""),
        ("d2", "a city", ""),
        ("line-3", "", "RowError"),
    ]
    assert f"wrote {to}: 3 rows" in capsys.readouterr().err


def test_export_refuses_to_overwrite_without_force(tmp_path, finished, capsys):
    to = tmp_path / "t.csv"
    to.write_text("mine\n")
    assert cli.main(["export", str(finished), "--to", str(to)]) == 2
    assert "exists; give --force" in capsys.readouterr().err
    assert to.read_text() == "mine\n"
    assert cli.main(["export", str(finished), "--to", str(to), "--force"]) == 0
    assert len(read_csv(to)) == 3


@pytest.mark.parametrize(
    ("records", "to", "message"),
    [
        ("gone.jsonl", "t.csv", "gone.jsonl: no such file"),
        (".", "t.csv", "is a folder"),
        ("o.jsonl", "t.xlsx", "'.xlsx' is not a table format"),
        ("o.jsonl", "t", "no suffix is not a table format"),
        ("o.jsonl", "other.csv", "exists; give --force"),
        ("o.jsonl", "docs.csv", "is the run's input file"),
        ("docs.csv", "t.csv", "a table without its records (docs.csv.records.jsonl not found)"),
        ("docs.jsonl", "t.csv", "line 1 is not a record"),
    ],
)
def test_export_wrong_paths_exit_2_in_one_line(tmp_path, finished, capsys, records, to, message,
                                               monkeypatch):  # fmt: skip
    (tmp_path / "docs.jsonl").write_text('{"text": "not a record"}\n')
    (tmp_path / "other.csv").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(["export", records, "--to", to]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_export_never_writes_over_the_input_even_with_force(tmp_path, finished, docs, capsys):
    before = docs.read_bytes()
    assert cli.main(["export", str(finished), "--to", str(docs), "--force"]) == 2
    assert "is the run's input file" in capsys.readouterr().err
    assert docs.read_bytes() == before


def test_export_of_a_run_still_writing_says_so(tmp_path, docs, capsys):
    out = tmp_path / "live.jsonl"
    manifest = RunManifest.new(pipeline="story", fingerprint="f" * 64, model="m", input=docs)
    with open_run(out, manifest, restart=False) as live:
        live.out.write(json.dumps({"id": "d1", "line": 1, "input": "a forest", "output": "o",
                                   "error": None}) + '\n{"id": "d2", "li')  # fmt: skip
        live.out.flush()
        assert cli.main(["export", str(out), "--to", str(tmp_path / "t.csv")]) == 0
        assert lock_path(out).exists()
    err = capsys.readouterr().err
    assert "still writing" in err and "records written so far" in err
    assert [r["id"] for r in read_csv(tmp_path / "t.csv")] == ["d1"]


def test_export_without_the_input_file_uses_the_records(tmp_path, finished, docs, capsys):
    docs.unlink()
    assert cli.main(["export", str(finished), "--to", str(tmp_path / "t.csv")]) == 0
    assert "is gone" in capsys.readouterr().err
    rows = read_csv(tmp_path / "t.csv")
    assert rows[0]["input"] == "a forest" and "shelf" not in rows[0]
