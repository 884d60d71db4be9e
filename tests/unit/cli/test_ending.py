"""The end of a run: the short table, unpriced runs, resumed runs, and the resume command."""

from lc_async_pipelines.cli._ending import Ending, ending_rows, print_ending, resume_command

FIRST = {
    "done": 498,
    "failed": 2,
    "throttled_429": 7,
    "input_tokens": 1000,
    "output_tokens": 500,
    "total_tokens": 1500,
    "cost_usd": 0.0123,
    "unpriced": 0,
    "failed_by_class": {"RateLimitError": 1, "TimeoutError": 1},
    "sessions": 1,
    "session_wall_s": 75.5,
    "total_wall_s": 75.5,
    "session": {"done": 498, "requests_sent": 600, "input_tokens": 1000, "output_tokens": 500},
}
ARGV = ["run", "story", "--input", "topics.txt", "--output", "out/s.jsonl", "--rpm", "600"]


def rows(summary, **kw) -> dict[str, str]:
    ending = Ending(records="out/s.jsonl", summary_file="out/s.jsonl.summary.json", argv=ARGV, **kw)
    return dict(ending_rows(summary, ending))


def test_the_table_of_a_first_session():
    table = rows(FIRST, rpm=600)
    assert table["done"] == "498"
    assert table["failed"] == "2: RateLimitError 1, TimeoutError 1"
    assert table["wall"] == "75.5 s; rate bound 60.0 s (--rpm 600)"  # 600 requests at 600 a minute
    assert table["429s"] == "7"
    assert table["tokens"] == "1,500 (1,000 in, 500 out)"
    assert table["cost"] == "$0.0123"
    assert table["records"] == "out/s.jsonl (full summary: out/s.jsonl.summary.json)"
    assert table["retry"] == "run the same command to run the 2 failed again:"


def test_a_resumed_run_says_its_figures_cover_every_session():
    summary = {**FIRST, "sessions": 3, "total_wall_s": 200.0, "session": {"done": 100}}
    table = rows(summary)
    assert table["done"] == "498 (all 3 sessions; 100 this session)"
    assert table["wall"] == "75.5 s this session, 3m20s (all 3 sessions); no --rpm/--tpm bound"
    assert table["tokens"].endswith("(all 3 sessions)")
    assert table["cost"].endswith("(all 3 sessions)")


def test_an_unpriced_run_says_unpriced_not_zero():
    assert rows({**FIRST, "cost_usd": None, "unpriced": 500})["cost"].startswith("unpriced")
    partly = rows({**FIRST, "unpriced": 3})["cost"]
    assert partly == "$0.0123 + 3 records unpriced"


def test_after_a_stop_the_table_names_the_command_that_resumes(capsys):
    summary = {**FIRST, "failed": 0, "failed_by_class": {}}
    assert "retry" not in rows(summary) and "stopped" not in rows(summary)
    table = rows(summary, stopped="signal")
    assert table["stopped"] == "run the same command to resume:"
    print_ending("pipelines: story", list(table.items()), [*ARGV, "--restart"])
    err = capsys.readouterr().err
    assert (
        err.splitlines()[-1]
        == "  pipelines run story --input topics.txt --output out/s.jsonl --rpm 600"
    )
    assert "\x1b" not in err  # off a terminal: plain text


def test_the_resume_command_drops_restart_and_quotes_what_needs_it():
    assert resume_command(["run", "x", "--rest", "--input", "my file.txt"]) == (
        "pipelines run x --input 'my file.txt'"
    )


def test_bad_input_rows_are_named_as_what_a_retry_does_not_fix():
    only_bad = {**FIRST, "failed": 2, "failed_by_class": {"RowError": 2}}
    assert rows(only_bad)["retry"] == (
        "fix the 2 bad input rows (each record names its line), then run:"
    )
    mixed = {**FIRST, "failed": 3, "failed_by_class": {"RowError": 1, "TimeoutError": 2}}
    assert rows(mixed)["retry"] == (
        "run the same command to run the 3 failed again (1 bad input row will fail until fixed):"
    )
