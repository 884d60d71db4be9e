import csv
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from lc_async_pipelines.errors import InputError
from lc_async_pipelines.runner import item_id_for, read_items


def test_jsonl_with_bad_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "first"}\n'
        b"{not json\n"
        b'{"other": "x"}\n'
        b'{"text": "   "}\n'
        b'{"text": "caf\xe9 bad bytes"}\n'
        b"\n"
        b'{"text": "second"}\n'
    )
    items = list(read_items(path))
    assert [i.line for i in items] == [1, 2, 3, 4, 5, 7]
    assert items[0].id == "a" and items[0].error is None
    assert "line 2: malformed JSON" in items[1].error
    assert "line 3: missing field" in items[2].error
    assert "line 4: empty text" in items[3].error
    assert "line 5: not valid UTF-8" in items[4].error
    assert items[5].id == item_id_for("second") and items[5].input == "second"


def test_json_array_csv_and_txt(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"article": "A1", "article_id": 7}]))
    [item] = read_items(tmp_path / "a.json", field="article", id_field="article_id")
    assert (item.id, item.input) == ("7", "A1")

    (tmp_path / "b.csv").write_text('Prompt,Model\n"multi\nline prompt",x\n')
    [item] = read_items(tmp_path / "b.csv", field="Prompt")
    assert item.input == "multi\nline prompt"

    (tmp_path / "c.txt").write_text("one\n\ntwo\n")
    assert [i.input for i in read_items(tmp_path / "c.txt")] == ["one", "two"]


def test_whole_file_errors(tmp_path):
    with pytest.raises(InputError, match="unknown format"):
        list(read_items(tmp_path / "x.parquet"))
    with pytest.raises(InputError, match="no such file"):
        list(read_items(tmp_path / "missing.jsonl"))
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(InputError, match="array"):
        list(read_items(tmp_path / "obj.json"))


def test_count_items_is_cheap_and_right_where_it_answers(tmp_path):
    from lc_async_pipelines.runner import count_items

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    csv_file = tmp_path / "b.csv"
    csv_file.write_text('text,id\n"two\nlines",1\nplain,2\n')
    array = tmp_path / "c.json"
    array.write_text('[{"text": "a"}]')
    assert count_items(jsonl) == 2
    assert count_items(csv_file) == 2  # a quoted field over two lines is one row
    assert count_items(array) is None  # would parse the array twice
    assert count_items(jsonl, max_bytes=4) is None
    assert count_items(tmp_path / "missing.txt") is None


# --- careless and hostile inputs ----------------------------------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("name", "body", "kwargs"),
    [
        ("a.csv", b"text,id\r\nhello,1\r\n", {}),
        ("a.jsonl", b'{"text": "hello", "id": "1"}\n', {}),
        ("a.json", b'[{"text": "hello", "id": "1"}]', {}),
        ("a.txt", b"hello\n", {"id_field": None}),
    ],
)
def test_a_utf8_byte_order_mark_is_not_text(tmp_path, name, body, kwargs):
    path = tmp_path / name
    path.write_bytes(BOM + body)
    [item] = read_items(path, **kwargs)
    assert item.error is None and item.input == "hello"
    assert item.id == ("1" if name != "a.txt" else item_id_for("hello"))


def test_a_csv_field_over_csvs_limit_is_read_and_the_global_limit_is_left_alone(tmp_path):
    limit = csv.field_size_limit()
    big = "x" * (limit + 10)
    path = tmp_path / "big.csv"
    path.write_text(f"id,text\n1,{big}\n2,small\n3,{'y' * 5000}\n", newline="")
    items = list(read_items(path, max_row_bytes=limit + 100))
    assert [(i.id, len(i.input)) for i in items] == [("1", limit + 10), ("2", 5), ("3", 5000)]
    assert all(i.error is None for i in items)
    assert csv.field_size_limit() == limit  # other code sees the limit it set

    # Over our own bound, the row becomes its error record and the others go on.
    [first, second, third] = read_items(path, max_row_bytes=4096)
    assert first.error == "line 1: row is over 4096 bytes (file line 2)"
    assert first.id == "line-1" and first.input == ""
    assert (second.input, third.error) == ("small", "line 3: row is over 4096 bytes (file line 4)")
    assert csv.field_size_limit() == limit


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_csv_dialects_are_sniffed_with_crlf_and_multiline_quoted_fields(tmp_path, delimiter):
    d = delimiter
    rows = [
        f"id{d}text{d}label",
        f"1{d}plain{d}a",
        f'2{d}"multi\r\nline {d} with ""quotes"""{d}b',
        f'3{d}5" screen{d}c',  # a quote inside an unquoted field is a character
        "",  # a blank line is no row
        f"4{d}last{d}d",
    ]
    path = tmp_path / "d.csv"
    path.write_bytes("\r\n".join(rows).encode() + b"\r\n")
    items = list(read_items(path))
    assert [i.error for i in items] == [None] * 4
    assert [(i.line, i.id, i.input) for i in items] == [
        (1, "1", "plain"),
        (2, "2", f'multi\r\nline {d} with "quotes"'),
        (3, "3", '5" screen'),
        (4, "4", "last"),
    ]
    whole = list(read_items(path, whole_rows=True))
    assert whole[0].input == {"id": "1", "text": "plain", "label": "a"}


def test_csv_sniffer_guess_must_match_the_header(tmp_path):
    # Prose with commas under a semicolon header: the header decides.
    path = tmp_path / "s.csv"
    path.write_text("text;id\nwell, then, yes;1\nno, no;2\n")
    assert [i.input for i in read_items(path)] == ["well, then, yes", "no, no"]
    # One column: no delimiter in the header, so comma; an unquoted comma is a second field.
    one = tmp_path / "one.csv"
    one.write_text('text\n"a, quoted"\nb; c\nd, e\n')
    a, b, c = read_items(one)
    assert (a.input, b.input) == ("a, quoted", "b; c")
    assert c.error == "line 3: 2 fields where the header has 1 (file line 4)"


def test_csv_rows_with_more_or_fewer_fields_than_the_header_are_their_own_errors(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("id,text,label\n1,ok,a\n2,too,many,fields\n3,few\n4,fine,d\n")
    items = list(read_items(path))
    assert [i.error for i in items] == [
        None,
        "line 2: 4 fields where the header has 3 (file line 3)",
        "line 3: 2 fields where the header has 3 (file line 4)",
        None,
    ]
    assert [i.id for i in items] == ["1", "line-2", "line-3", "4"]


def test_csv_bytes_that_are_not_utf8_spoil_only_their_own_row(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(
        b'id,text\n1,caf\xc3\xa9\n2,"two\nlines caf\xe9"\n3,fine\n4,nul\x00byte\n5,end\n'
    )
    items = list(read_items(path))
    assert [i.input for i in items] == ["caf\u00e9", "", "fine", "", "end"]
    assert items[1].error == "line 2: not valid UTF-8 (file line 4)"  # the line of the bad byte
    assert items[3].error == "line 4: contains NUL bytes (file line 6)"
    assert "\ufffd" not in "".join(str(i.input) for i in items)  # nothing replaced silently

    header = tmp_path / "header.csv"
    header.write_bytes(b"t\xe9xt\nvalue\n")
    with pytest.raises(
        InputError, match=r"header\.csv: the header row \(line 1\) is not valid UTF-8"
    ):
        list(read_items(header))


def test_csv_quirks_that_are_whole_file_errors(tmp_path):
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"id,text\r1,a\r2,b\r")
    with pytest.raises(InputError, match="bare carriage return"):
        list(read_items(mac))
    wide = tmp_path / "wide.csv"
    wide.write_bytes("text\nhello\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"wide\.csv: is UTF-16; save it as UTF-8"):
        read_items(wide)


def test_a_stray_quote_is_an_error_on_its_line_and_merges_no_rows(tmp_path):
    """Issue 22, point 4: an unterminated quote merged 3 rows into 1, exit 0."""
    merged = tmp_path / "merged.csv"
    merged.write_text('id,text\n1,"unterminated\n2,b\n3,c\n')
    assert [(i.id, i.input, i.error) for i in read_items(merged)] == [
        (
            "line-1",
            "",
            "line 1: a quoted field never closes: the file ends inside it (file line 2)",
        ),
        ("2", "b", None),
        ("3", "c", None),
    ]
    # A quote closed on a later line with text after it: the first line is the
    # error, and the lines it swallowed are read again as rows.
    closed = tmp_path / "closed.csv"
    closed.write_text('id,text\n1,"a\n2,b\n3,"c\n4,d\n5,"e\nf"\n')
    items = list(read_items(closed))
    assert [(i.input, i.error) for i in items] == [
        ("", "line 1: malformed CSV (',' expected after '\"') (file line 2)"),
        ("b", None),
        ("", "line 3: malformed CSV (',' expected after '\"') (file line 4)"),
        ("d", None),
        ("e\nf", None),  # a quoted field over two lines is still one row
    ]
    cut = tmp_path / "cut.csv"  # the file cut by a kill inside a quoted field
    cut.write_text('id,text\n1,ok\n2,"cut short\nby a kill')
    assert [i.error for i in read_items(cut)] == [
        None,
        "line 2: a quoted field never closes: the file ends inside it (file line 3)",
        "line 3: 1 fields where the header has 2 (file line 4)",
    ]
    header = tmp_path / "header.csv"
    header.write_text('id,"text\n1,a\n')
    with pytest.raises(InputError, match=r"the header row \(line 1\) opens a quote that never"):
        list(read_items(header))


def test_lines_that_each_open_a_quote_are_refused_in_linear_time(tmp_path):
    """Each line read again after its predecessor would be quadratic: bounded, then refused."""
    path = tmp_path / "quotes.csv"
    path.write_bytes(b"a,b\n" + b'a"b,"\n' * 60_000)  # every line opens a quote for good
    reader = read_items(path)
    with pytest.raises(InputError, match=r"quotes\.csv: file line \d+: too many quotes"):
        list(reader)


def test_an_all_nul_csv_or_a_bare_cr_in_text_is_said_never_dropped(tmp_path):
    """Issue 22, point 4: a 100 KB all-NUL CSV gave 0 items; a bare CR joined two .txt lines."""
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"\x00" * 100_000)
    with pytest.raises(InputError, match=r"nul\.csv: the header row \(line 1\) contains NUL"):
        list(read_items(nul))
    text = tmp_path / "cr.txt"
    text.write_bytes(b"one\rtwo\nthree\r\n")
    assert [(i.line, i.input, i.error) for i in read_items(text)] == [
        (1, "", "line 1: holds a bare carriage return (\\r): lines joined? save with \\n"),
        (2, "three", None),  # CRLF is a line end
    ]
    mac = tmp_path / "mac.txt"
    mac.write_bytes(b"one\rtwo\rthree\r")
    with pytest.raises(InputError, match=r"mac\.txt: lines end with a bare carriage return"):
        list(read_items(mac))


def test_json_that_is_not_an_array_is_empty_or_is_huge(tmp_path, monkeypatch):
    from lc_async_pipelines.runner.inputs import read as inputs

    for body, message in [
        (b'{"text": "x"}', "expected a JSON array of objects, not dict"),
        (b'"text"', "expected a JSON array of objects, not str"),
        (b"[1, 2", "not a JSON document"),
        (b"[" * 100_000 + b"]" * 100_000, "not a JSON document"),  # nested too deep
        (b'["caf\xe9"]', "not valid UTF-8"),
    ]:
        path = tmp_path / "x.json"
        path.write_bytes(body)
        with pytest.raises(InputError, match=message) as caught:
            list(read_items(path))
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)

    for body in (b"", b"  \n", b"[]"):
        (tmp_path / "e.json").write_bytes(body)
        assert list(read_items(tmp_path / "e.json")) == []

    monkeypatch.setattr(inputs, "MAX_JSON_BYTES", 100)
    (tmp_path / "big.json").write_text(json.dumps([{"text": "x" * 50}] * 3))
    with pytest.raises(InputError, match=r"too large for a \.json array.*\.jsonl"):
        list(read_items(tmp_path / "big.json"))


def test_json_element_over_the_bound_is_its_own_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": "x" * 100}, {"text": "small"}, 7]))
    big, small, seven = read_items(path, max_row_bytes=50)
    assert big.error == "line 1: input is over 50 bytes"
    assert small.input == "small"
    assert seven.error == "line 3: expected an object or a string"


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.txt"])
def test_an_empty_file_has_no_items(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    reader = read_items(tmp_path / name)
    assert list(reader) == []
    assert (reader.duplicates, reader.collisions) == (0, 0)
    (tmp_path / name).write_bytes(BOM + b"\r\n\n")
    assert list(read_items(tmp_path / name)) == []


def test_a_directory_or_a_device_is_refused_at_the_call(tmp_path):
    (tmp_path / "rows.jsonl").mkdir()
    with pytest.raises(InputError, match=r"rows\.jsonl: is a directory"):
        read_items(tmp_path / "rows.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_items(tmp_path)
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.txt: not a regular file"):
        read_items(fifo)


def test_an_unreadable_file_is_refused_at_the_call(tmp_path, monkeypatch):
    path = tmp_path / "secret.jsonl"
    path.write_text('{"text": "x"}\n')

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(InputError, match=r"secret\.jsonl: cannot read \(Permission denied\)"):
        read_items(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_by_its_mode(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("x\n")
    path.chmod(0)
    with pytest.raises(InputError, match="cannot read"):
        read_items(path)


def test_a_read_failure_mid_file_is_an_input_error(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    reader = read_items(path)
    real_open = Path.open

    class Failing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def readline(self, size=-1):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Failing(real_open(self, *a, **k)))
    with pytest.raises(InputError, match=r"a\.jsonl: cannot read \(Input/output error\)"):
        next(reader)


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_a_line_over_the_bound_is_an_error_without_being_held(tmp_path, suffix):
    path = tmp_path / f"big{suffix}"
    huge = 20 * 1024 * 1024
    with path.open("wb") as fh:
        fh.write(b'{"text": "before"}\n' if suffix == ".jsonl" else b"before\n")
        fh.write(
            b'{"text": "' + b"x" * huge + b'"}\n' if suffix == ".jsonl" else b"x" * huge + b"\n"
        )
        fh.write(b'{"text": "after"}' if suffix == ".jsonl" else b"after")  # no final line end
    tracemalloc.start()
    try:
        items = list(read_items(path, id_field=None, max_row_bytes=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(i.line, i.input, i.error) for i in items] == [
        (1, "before", None),
        (2, "", "line 2: line is over 65536 bytes"),
        (3, "after", None),
    ]
    assert peak < 4 * 1024 * 1024  # the 20 MB line was never held whole


def test_a_csv_record_over_the_bound_is_an_error_without_being_held(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("wb") as fh:
        fh.write(b'id,text\n1,before\n2,"')
        for _ in range(200):  # one quoted field of 200 lines, 20 MB
            fh.write(b"y" * (100 * 1024) + b"\n")
        fh.write(b'"\n3,after\n')
    tracemalloc.start()
    try:
        items = list(read_items(path, max_row_bytes=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(i.id, i.error) for i in items] == [
        ("1", None),
        ("line-2", "line 2: row is over 65536 bytes (file line 3)"),
        ("3", None),
    ]
    assert peak < 4 * 1024 * 1024


def test_default_row_bound_and_bad_bound():
    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.runner.inputs import DEFAULT_MAX_ROW_BYTES

    assert DEFAULT_MAX_ROW_BYTES == 4 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="max_row_bytes"):
        read_items("x.jsonl", max_row_bytes=0)


def test_hostile_jsonl_rows_are_their_own_errors(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(
        b'{"text": "ok"}\r\n'  # CRLF line end
        + b'{"n": '
        + b"9" * 5000
        + b"}\n"  # too many digits for an int
        + b"[" * 5000
        + b"]" * 5000
        + b"\n"  # nested too deep
        + b'{"text": "nul\x00"}\n'
        + b"[1, 2]\n"
    )
    items = list(read_items(path))
    assert items[0].input == "ok"
    assert items[1].error.startswith("line 2: malformed JSON (ValueError")
    assert items[2].error.startswith("line 3: malformed JSON (RecursionError")
    assert items[3].error == "line 4: contains NUL bytes (binary or UTF-16 data?)"
    assert items[4].error == "line 5: expected an object or a string"


def test_same_id_different_content_is_a_collision_record_never_dropped(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "X", "text": "first"},
                {"id": "X", "text": "second"},  # collision
                {"id": "X", "text": "first", "note": "other field"},  # same input: duplicate
                {"id": "Y", "text": "y"},
                {"id": "X", "text": "third"},  # collision again
                {"id": "Y", "text": "y"},  # duplicate
            ]
        )
        + "\n"
    )
    reader = read_items(path)
    items = list(reader)
    assert [(i.id, i.line, i.input) for i in items] == [
        ("X", 1, "first"),
        ("line-2", 2, ""),
        ("Y", 4, "y"),
        ("line-5", 5, ""),
    ]
    assert items[1].error == "line 2: id 'X' already used by line 1 with different content"
    assert items[3].error == "line 5: id 'X' already used by line 1 with different content"
    assert (reader.duplicates, reader.collisions) == (2, 2)
    assert len({i.id for i in items}) == len(items)  # the runner drops none of them


def test_identical_rows_without_ids_are_duplicates(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("same\nother\nsame\n  same  \n")
    reader = read_items(path)
    assert [i.input for i in reader] == ["same", "other"]
    assert (reader.duplicates, reader.collisions) == (2, 0)


def test_whole_row_content_covers_every_field(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"id": 1, "topic": "a", "tone": "dry"}\n'
        '{"tone": "dry", "topic": "a", "id": 1}\n'  # same row, other key order
        '{"id": 1, "topic": "a", "tone": "warm"}\n'  # same id, another row
    )
    reader = read_items(path, whole_rows=True)
    first, clash = reader
    assert first.id == "1" and first.input == {"id": 1, "topic": "a", "tone": "dry"}
    assert clash.error == "line 3: id '1' already used by line 1 with different content"
    assert (reader.duplicates, reader.collisions) == (1, 1)
    # In text mode the input is the text field: other fields do not make it different.
    text_reader = read_items(path, field="topic")
    assert [i.input for i in text_reader] == ["a"]
    assert text_reader.duplicates == 2


def test_error_ids_never_clash_with_row_ids(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "line-2", "text": "a"}\n{not json\n{"id": "line-3", "text": "b"}\n')
    items = list(read_items(path))
    assert [i.id for i in items] == ["line-2", "line-2-2", "line-3"]
    assert items[1].error.startswith("line 2: malformed JSON")
    # A later row taking an error record's id is a collision, not dropped.
    path.write_text('{not json\n{"id": "line-1", "text": "b"}\n')
    reader = read_items(path)
    bad, clash = reader
    assert (bad.id, clash.id) == ("line-1", "line-2")
    assert clash.error == "line 2: id 'line-1' already used by line 1 with different content"
    assert reader.collisions == 1


def test_read_items_returns_an_item_reader(tmp_path):
    from collections.abc import Iterator

    from lc_async_pipelines.runner.inputs import ItemReader

    path = tmp_path / "a.txt"
    path.write_text("a\nb\n")
    reader = read_items(path)
    assert isinstance(reader, ItemReader) and isinstance(reader, Iterator)
    assert iter(reader) is reader and reader.path == path
    assert next(reader).input == "a"
    assert [i.input for i in reader] == ["b"]


def test_a_path_that_cannot_be_looked_at_is_an_input_error(tmp_path, monkeypatch):
    path = tmp_path / "locked" / "a.jsonl"

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(InputError, match=r"a\.jsonl: cannot read \(Permission denied\)"):
        read_items(path)


def test_a_lone_surrogate_escape_is_a_bad_row_naming_it(tmp_path):
    path = tmp_path / "surrogates.jsonl"
    path.write_text(
        '{"text": "half \\ud83d a pair"}\n'
        '{"text": "whole \\ud83d\\ude00 pair"}\n'
        '{"text": "ok", "extra": ["x", {"\\udc80": 1}]}\n',
        encoding="utf-8",
    )
    items = list(read_items(path))
    assert (
        items[0].error
        == "line 1: holds a lone surrogate (\\ud83d): half of a UTF-16 pair, not text"
    )
    assert items[1].error is None and items[1].input == "whole \U0001f600 pair"
    assert (
        items[2].error
        == "line 3: holds a lone surrogate (\\udc80): half of a UTF-16 pair, not text"
    )

    as_json = tmp_path / "surrogates.json"
    as_json.write_text('[{"text": "a \\udfff"}, {"text": "b"}]', encoding="utf-8")
    assert [i.error for i in read_items(as_json)] == [
        "line 1: holds a lone surrogate (\\udfff): half of a UTF-16 pair, not text",
        None,
    ]
