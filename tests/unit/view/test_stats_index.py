"""The figures kept one record at a time, the index of line offsets, paging and search."""

import json

from lc_async_pipelines.runner.records import run_totals
from lc_async_pipelines.view.index import CELL_CHARS, LineIndex, read_rows, search
from lc_async_pipelines.view.stats import Histogram, RunStats, Series
from lc_async_pipelines.view.tail import RecordTail


def record(i, *, error=None, throttled=0, history=(), latency=1.5, ttft=0.3, cost=0.001):
    return {
        "id": f"i{i}", "line": i, "input": f"topic {i}", "output": None if error else f"story {i}",
        "error": error, "attempts": 1 + len(history), "latency_s": latency, "ttft_s": ttft,
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}, "calls": 1,
        "throttled": throttled, "history": list(history), "cost_usd": cost,
    }  # fmt: skip


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


RETRY = {"stage": "call", "error": "RateLimitError", "status": 429, "seconds": 0.1, "wait_s": 1}
FAIL = {"type": "APIError", "message": "server error 500"}


def test_stats_match_the_summary_totals_of_the_same_file(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [record(i) for i in range(10)]
    records[3] = record(3, error=FAIL, history=[RETRY, RETRY], throttled=2)
    records[7] = record(7, history=[RETRY], throttled=1)
    write(path, records)
    stats = RunStats()
    for line in RecordTail(path).read().lines:
        stats.add(line.record)
    assert stats.as_dict()["totals"] == run_totals(path).as_dict()
    figures = stats.as_dict()
    assert figures["records"] == 10 and figures["calls"] == 10
    assert figures["totals"]["failed"] == 1 and figures["totals"]["throttled_429"] == 3
    assert figures["throttled"]["values"][3] == 2 and figures["throttled"]["values"][7] == 1
    assert figures["retries"]["values"][7] == 1  # a done record's failed attempt is a retry
    assert figures["failures"]["APIError"]["count"] == 1
    assert figures["failures"]["APIError"]["first_record"] == 4
    assert figures["failures"]["APIError"]["last_message"] == "server error 500"
    assert sum(figures["latency"]["counts"]) == 10


def test_histogram_bins_by_upper_edge():
    h = Histogram(edges=(1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0, 100.0):
        h.add(value)
    assert h.counts == [2, 1, 2]


def test_series_stays_bounded_and_keeps_its_sum():
    series = Series(buckets=8)
    for i in range(1000):
        series.add(i, 1.0)
    assert len(series.values) <= 8
    assert sum(series.values) == 1000
    assert series.width == 128


def test_pages_and_failed_only_pages(tmp_path):
    path = tmp_path / "out.jsonl"
    write(path, [record(i, error=FAIL if i % 4 == 0 else None) for i in range(30)])
    index = LineIndex()
    for line in RecordTail(path).read().lines:
        index.add(line.offset, failed=line.record["error"] is not None)
    assert len(index) == 30 and index.count(failed_only=True) == 8
    page2 = read_rows(path, index.page(2, 10, failed_only=False))
    assert [r["id"] for r in page2] == [f"i{i}" for i in range(10, 20)]
    failed = read_rows(path, index.page(1, 5, failed_only=True))
    assert [r["id"] for r in failed] == ["i0", "i4", "i8", "i12", "i16"]
    assert failed[0]["error"] == "APIError: server error 500" and failed[0]["output"] is None
    assert [r["n"] for r in read_rows(path, index.page(2, 5, failed_only=True))] == [21, 25, 29]


def test_rows_cut_long_text_and_show_structured_output_as_json(tmp_path):
    path = tmp_path / "out.jsonl"
    long = record(0)
    long["input"] = "w" * (CELL_CHARS + 50)
    structured = record(1)
    structured["output"] = {"title": "Bridge", "score": 3}
    write(path, [long, structured])
    index = LineIndex()
    for line in RecordTail(path).read().lines:
        index.add(line.offset, failed=False)
    rows = read_rows(path, index.page(1, 10, failed_only=False))
    assert len(rows[0]["input"]) == CELL_CHARS and rows[0]["input"].endswith("…")
    assert json.loads(rows[1]["output"]) == {"title": "Bridge", "score": 3}


def test_a_lone_surrogate_shows_as_a_replacement_character(tmp_path):
    # as the records writer keeps a reply holding half a UTF-16 pair: an ASCII escape
    path = tmp_path / "out.jsonl"
    odd = record(0)
    odd["output"] = "half \ud83d a pair"
    odd["input"] = {"text": "x \udc80"}
    write(path, [odd])
    index = LineIndex()
    for line in RecordTail(path).read().lines:
        index.add(line.offset, failed=False)
    (row,) = read_rows(path, index.page(1, 10, failed_only=False))
    assert row["output"] == "half \ufffd a pair"
    assert json.loads(row["input"]) == {"text": "x \ufffd"}
    json.dumps(row, ensure_ascii=False).encode()  # what the page is sent: valid UTF-8


def test_search_finds_fields_not_keys_and_resumes_from_its_cursor(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [record(i) for i in range(50)]
    records[10]["input"] = 'the "Harbour" lighthouse'
    records[40]["output"] = "A HARBOUR at night"
    records[45] = record(45, error={"type": "Timeout", "message": "harbour call timed out"})
    write(path, records)
    index = LineIndex()
    for line in RecordTail(path).read().lines:
        index.add(line.offset, failed=line.record["error"] is not None)
    assert search(path, index, "error", start=0, size=10, failed_only=False).rows == []
    first = search(path, index, "harbour", start=0, size=1, failed_only=False)
    assert [r["id"] for r in first.rows] == ["i10"] and first.next == 11
    rest = search(path, index, "harbour", start=first.next, size=10, failed_only=False)
    assert [r["id"] for r in rest.rows] == ["i40", "i45"] and rest.next is None
    failed = search(path, index, "harbour", start=0, size=10, failed_only=True)
    assert [r["id"] for r in failed.rows] == ["i45"]
    assert (
        search(path, index, '"harbour" light', start=0, size=5, failed_only=False).rows[0]["id"]
        == "i10"
    )


def test_search_stops_at_its_byte_budget(tmp_path):
    path = tmp_path / "out.jsonl"
    write(path, [record(i) for i in range(100)])
    index = LineIndex()
    for line in RecordTail(path).read().lines:
        index.add(line.offset, failed=False)
    page = search(path, index, "nowhere", start=0, size=10, failed_only=False, budget_bytes=1000)
    assert page.rows == [] and page.next is not None and 0 < page.next < 100
    assert page.scanned == page.next


def test_a_row_says_which_tier_answered_its_calls(tmp_path):
    # a flex or batch run's page shows what each record cost and at which tier
    path = tmp_path / "out.jsonl"
    tiers = ["flex", "flex,default", "batch", None]
    write(path, [{**record(i), "service_tier": tier} for i, tier in enumerate(tiers)])
    index, offset = LineIndex(), 0
    for line in path.read_bytes().splitlines(keepends=True):
        index.add(offset, failed=False)
        offset += len(line)
    rows = read_rows(path, index.page(1, 10, failed_only=False))
    assert [row["service_tier"] for row in rows] == tiers
