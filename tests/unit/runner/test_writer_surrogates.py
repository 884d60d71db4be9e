"""A reply with a lone surrogate (half a UTF-16 pair) is written, not a crash of the run."""

from __future__ import annotations

import json

from lc_async_pipelines.runner.record import Record
from lc_async_pipelines.runner.writer import write_records


async def _records():
    yield Record(id="a", line=1, input="x", output="broken \ud8a6 pair")
    yield Record(id="b", line=2, input="y", output="fine é")


async def test_a_lone_surrogate_is_escaped_and_every_record_kept(tmp_path):
    path = tmp_path / "out.jsonl"
    with path.open("w", encoding="utf-8") as out:
        summary = await write_records(_records(), out)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["output"] for line in lines] == ["broken \ud8a6 pair", "fine é"]
    assert "é" in lines[1]  # other lines stay UTF-8 text
    assert summary.done == 2
