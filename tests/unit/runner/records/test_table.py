"""Records as a table: CSV and Parquet round trips, flattening, the input's columns, resume."""

import csv
import json
import sys
from pathlib import Path

import pytest

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import Record, RunSummary
from lc_async_pipelines.runner.records import (
    RunManifest,
    check_table_format,
    open_run,
    records_path,
    write_table,
)
from lc_async_pipelines.runner.records import table as table_module

pq = pytest.importorskip("pyarrow.parquet")

FIXED = ["error", "error_class", "attempts", "cost_usd", "latency_s", "ttft_s", "queued_s",
         "input_tokens", "output_tokens", "total_tokens"]  # fmt: skip


def rec(id_, line, input_, output=None, *, error=None, tokens=None, cost=None):
    return Record(
        id=id_,
        line=line,
        input=input_,
        output=output,
        error={"type": error, "message": f"{error} at {id_}"} if error else None,
        attempts=1,
        latency_s=0.25 * line,
        usage={"input_tokens": tokens, "output_tokens": 2 * tokens, "total_tokens": 3 * tokens}
        if tokens
        else {},
        cost_usd=cost,
    ).to_dict()


def write_records(path, *records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def csv_rows(path):
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def parquet_rows(path):
    return pq.read_table(path).to_pylist()


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text(
        'doc_id,title,article\nd1,One,"first, with a comma"\nd2,Two,second\nd3,Three,third\n'
    )
    return path


def test_csv_round_trip_in_input_order_each_item_once_with_the_input_columns(tmp_path, docs):
    records = write_records(
        tmp_path / "r.jsonl",
        rec("d3", 3, "third", "story three", tokens=5, cost=0.002),
        rec("d1", 1, "first, with a comma", error="APIError"),  # failed, then done later
        rec("d2", 2, "second", "story two"),
        rec("d1", 1, "first, with a comma", "story one\nin two lines", tokens=1),
        tail='{"id": "d9", "li',  # a partial last line, as a kill leaves it
    )
    table = tmp_path / "t.csv"
    info = write_table(records, table, input_path=docs)
    rows = csv_rows(table)
    assert [r["id"] for r in rows] == ["d1", "d2", "d3"]
    assert list(rows[0]) == ["id", "doc_id", "title", "article", "output", *FIXED]
    assert rows[0]["article"] == "first, with a comma" and rows[0]["title"] == "One"
    assert rows[0]["output"] == "story one\nin two lines" and rows[0]["error"] == ""
    assert rows[2]["cost_usd"] == "0.002" and rows[2]["total_tokens"] == "15"
    assert rows[1]["cost_usd"] == "" and rows[1]["input_tokens"] == ""
    assert (info.rows, info.from_input, info.from_records, info.unreadable) == (3, 3, 0, 1)
    assert not (tmp_path / "t.csv.tmp").exists()


def test_parquet_round_trip_has_typed_columns(tmp_path, docs):
    records = write_records(
        tmp_path / "r.jsonl",
        rec("d1", 1, "first, with a comma", {"title": "T1", "score": 3, "tags": ["a"]}, tokens=2),
        rec("d2", 2, "second", {"title": "T2", "score": 4.5, "ok": True}, tokens=3),
        rec("d3", 3, "third", error="OutputValidationError"),
    )
    table = tmp_path / "t.parquet"
    write_table(records, table, input_path=docs)
    schema = pq.read_schema(table)
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert types["output.score"] == "double"  # ints and floats together
    assert types["output.ok"] == "bool" and types["output.tags"] == "string"
    assert types["attempts"] == "int64" and types["latency_s"] == "double"
    rows = parquet_rows(table)
    assert rows[0]["output.tags"] == '["a"]' and rows[0]["output.score"] == 3.0
    assert rows[1]["output.ok"] is True and rows[0]["output.ok"] is None
    assert rows[2]["error_class"] == "OutputValidationError" and rows[2]["output.title"] is None
    assert rows[1]["title"] == "Two" and rows[1]["input_tokens"] == 3


def test_structured_output_is_flattened_one_level(tmp_path):
    nested = {"title": "T", "meta": {"words": 12, "lang": "en"}, "points": [1, 2]}
    records = write_records(tmp_path / "r.jsonl", rec("a", 1, "topic a", nested))
    table = tmp_path / "t.csv"
    write_table(records, table)
    (row,) = csv_rows(table)
    assert row["output.title"] == "T"
    assert json.loads(row["output.meta"]) == {"words": 12, "lang": "en"}
    assert json.loads(row["output.points"]) == [1, 2]
    assert "output" not in row


def test_a_lone_surrogate_in_a_record_becomes_a_replacement_character(tmp_path):
    # the records writer keeps a reply's lone surrogate as an ASCII escape
    records = write_records(
        tmp_path / "r.jsonl",
        rec("a", 1, "topic a", "half \ud83d a pair"),
        rec("b", 2, "topic b", {"tags": ["x \udc80"]}),
    )
    for name, read in (("t.csv", csv_rows), ("t.parquet", parquet_rows)):
        write_table(records, tmp_path / name)
        rows = read(tmp_path / name)
        assert rows[0]["output"] == "half \ufffd a pair"
        assert "\ufffd" in rows[1]["output.tags"]
    assert "\\ud83d" in (tmp_path / "r.jsonl").read_text()  # the records are left as they were


def test_without_the_input_file_the_records_input_stands_in(tmp_path, docs):
    rows_in = [rec("d1", 1, "first, with a comma", "o1"), rec("d2", 2, {"q": "x", "n": 2}, "o2")]
    records = write_records(tmp_path / "r.jsonl", *rows_in)
    table = tmp_path / "t.csv"
    info = write_table(records, table, input_path=tmp_path / "gone.csv")
    rows = csv_rows(table)
    assert rows[0]["input"] == "first, with a comma" and rows[1]["q"] == "x"
    assert rows[1]["n"] == "2" and info.from_records == 2


def test_a_changed_input_row_is_not_joined(tmp_path, docs):
    records = write_records(
        tmp_path / "r.jsonl",
        rec("d1", 1, "first, with a comma", "o1"),
        rec("d2", 2, "second", "o2"),
    )
    docs.write_text("doc_id,title,article\nd1,One,first edited\nd2,Two,second\n")
    info = write_table(records, tmp_path / "t.csv", input_path=docs)
    rows = csv_rows(tmp_path / "t.csv")
    assert rows[0]["input"] == "first, with a comma" and rows[0]["title"] == ""
    assert rows[1]["title"] == "Two" and info.from_records == 1


def test_text_input_is_one_input_column(tmp_path):
    src = tmp_path / "topics.txt"
    src.write_text("a forest\na city\n")
    records = write_records(
        tmp_path / "r.jsonl", rec("h2", 2, "a city", "s2"), rec("h1", 1, "a forest", "s1")
    )
    write_table(records, tmp_path / "t.csv", input_path=src)
    rows = csv_rows(tmp_path / "t.csv")
    assert [(r["input"], r["output"]) for r in rows] == [("a forest", "s1"), ("a city", "s2")]


def test_input_columns_named_like_record_columns_are_prefixed(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({"id": "x1", "text": "t", "output": "old", "error": "e"}) + "\n")
    records = write_records(tmp_path / "r.jsonl", rec("x1", 1, "t", "new"))
    write_table(records, tmp_path / "t.csv", input_path=src)
    (row,) = csv_rows(tmp_path / "t.csv")
    assert row["output"] == "new" and row["input.output"] == "old" and row["input.error"] == "e"
    assert "input.id" not in row  # it only repeats id


def test_an_input_id_unlike_the_record_id_is_kept(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({"id": 7, "doc": "D", "text": "t"}) + "\n")
    records = write_records(tmp_path / "r.jsonl", rec("D", 1, "t", "o"))  # --id-field doc
    write_table(records, tmp_path / "t.csv", input_path=src)
    (row,) = csv_rows(tmp_path / "t.csv")
    assert (row["id"], row["input.id"], row["doc"]) == ("D", "7", "D")


def test_parquet_is_written_in_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(table_module, "ROW_GROUP_ROWS", 10)
    records = write_records(
        tmp_path / "r.jsonl", *(rec(f"i{n:03d}", n, f"t{n}", f"o{n}") for n in range(1, 36))
    )
    write_table(records, tmp_path / "t.parquet")
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 4
    assert [r["id"] for r in parquet_rows(tmp_path / "t.parquet")][:3] == ["i001", "i002", "i003"]


def test_empty_records_give_a_header_only_table(tmp_path):
    records = write_records(tmp_path / "r.jsonl")
    assert write_table(records, tmp_path / "t.csv").rows == 0
    assert (tmp_path / "t.csv").read_text().splitlines() == [",".join(["id", *FIXED])]
    write_table(records, tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 0


@pytest.mark.parametrize("name", ["t.xlsx", "t", "t.jsonl"])
def test_a_table_format_that_is_not_one_is_refused(tmp_path, name):
    with pytest.raises(ConfigurationError, match=r"not a table format; give a \.csv or \.parquet"):
        check_table_format(tmp_path / name)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigurationError, match=r"lc-async-pipelines\[parquet\]"):
        write_table(write_records(tmp_path / "r.jsonl"), tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def manifest(input_path: Path) -> RunManifest:
    return RunManifest.new(pipeline="story", fingerprint="f" * 64, model="m", input=input_path)


def test_a_table_output_keeps_its_records_beside_it_and_resumes(tmp_path, docs):
    out = tmp_path / "out.csv"
    assert records_path(out) == tmp_path / "out.csv.records.jsonl"
    assert records_path(tmp_path / "out.jsonl") == tmp_path / "out.jsonl"
    with open_run(out, manifest(docs), restart=False) as run:
        run.out.write(json.dumps(rec("d2", 2, "second", "o2")) + "\n")
        run.out.write(json.dumps(rec("d1", 1, "first, with a comma", error="Boom")) + "\n")
        run.out.write('{"id": "d3", "out')  # killed mid-line: no table written
    assert not out.exists()
    with open_run(out, manifest(docs), restart=False) as run:
        assert run.done_ids == {"d2"} and run.prior.dropped_failed == 1
        run.out.write(json.dumps(rec("d1", 1, "first, with a comma", "o1")) + "\n")
        run.finish(RunSummary())
        assert run.table_info is not None and run.table_info.rows == 2
    assert [(r["id"], r["title"], r["output"]) for r in csv_rows(out)] == [
        ("d1", "One", "o1"),
        ("d2", "Two", "o2"),
    ]


def test_a_table_without_its_records_is_not_a_runs_and_is_left_alone(tmp_path, docs):
    out = tmp_path / "mine.csv"
    out.write_text("a,b\n")
    for restart in (False, True):
        with pytest.raises(ConfigurationError, match="was not written by a run"):
            open_run(out, manifest(docs), restart=restart)
    assert out.read_text() == "a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.csv", "mine.csv"]
