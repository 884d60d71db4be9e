"""The tail of a records file: complete lines only, from an offset; a replaced file is read again."""

import json
import os

from lc_async_pipelines.view.tail import RecordTail


def line(i, error=None):
    record = {"id": f"i{i}", "line": i, "input": f"topic {i}", "output": None if error else f"out {i}",
              "error": error}  # fmt: skip
    return (json.dumps(record) + "\n").encode()


def test_reads_complete_lines_and_keeps_offsets(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(line(1) + line(2))
    tail = RecordTail(path)
    batch = tail.read()
    assert [t.record["id"] for t in batch.lines] == ["i1", "i2"]
    assert [t.number for t in batch.lines] == [1, 2]
    assert batch.lines[1].offset == len(line(1))
    assert tail.offset == path.stat().st_size
    assert tail.read().lines == []  # nothing new


def test_a_partial_last_line_waits_until_it_ends(tmp_path):
    path = tmp_path / "out.jsonl"
    whole = line(2)
    path.write_bytes(line(1) + whole[:10])
    tail = RecordTail(path)
    assert [t.record["id"] for t in tail.read().lines] == ["i1"]
    assert tail.pending == 10
    with path.open("ab") as fh:
        fh.write(whole[10:])
    batch = tail.read()
    assert [t.record["id"] for t in batch.lines] == ["i2"]
    assert batch.lines[0].number == 2
    assert tail.pending == 0


def test_a_corrupt_line_is_handed_out_with_its_problem(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(line(1) + b'{"id": "i2", "inp\n' + b"[1, 2]\n" + line(4))
    lines = RecordTail(path).read().lines
    assert [t.problem for t in lines] == [None, "not JSON", "a JSON list, not an object", None]
    assert lines[3].record["id"] == "i4"


def test_a_budget_smaller_than_the_file_reads_it_in_steps(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"".join(line(i) for i in range(100)))
    tail = RecordTail(path)
    ids = []
    while batch := tail.read(max_bytes=500).lines:
        ids += [t.record["id"] for t in batch]
    assert ids == [f"i{i}" for i in range(100)]


def test_a_line_longer_than_the_budget_is_read_whole(tmp_path):
    path = tmp_path / "out.jsonl"
    long = json.dumps({"id": "big", "input": "x" * 10_000, "output": "y", "error": None}) + "\n"
    path.write_bytes(long.encode() + line(2))
    lines = RecordTail(path).read(max_bytes=100).lines
    assert lines[0].record["id"] == "big"


def test_a_replaced_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(line(1) + line(2, {"type": "X", "message": "m"}))
    tail = RecordTail(path)
    assert len(tail.read().lines) == 2
    staged = tmp_path / "out.jsonl.tmp"  # a resume's compaction: os.replace by a new file
    staged.write_bytes(line(1) + line(3))
    os.replace(staged, path)
    batch = tail.read()
    assert batch.replaced
    assert [t.record["id"] for t in batch.lines] == ["i1", "i3"]


def test_a_truncated_file_is_read_again(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(line(1) + line(2))
    tail = RecordTail(path)
    tail.read()
    with path.open("r+b") as fh:  # same inode, shorter
        fh.truncate(0)
        fh.write(line(9))
    batch = tail.read()
    assert batch.replaced
    assert [t.record["id"] for t in batch.lines] == ["i9"]


def test_a_missing_file_is_no_error(tmp_path):
    batch = RecordTail(tmp_path / "nothing.jsonl").read()
    assert batch.missing and batch.lines == []
