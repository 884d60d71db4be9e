import json

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
