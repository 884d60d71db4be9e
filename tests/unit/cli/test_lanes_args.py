"""``--lanes`` and ``--deadline``: careless values are one line and exit 2; --dry-run prints a plan."""

from __future__ import annotations

import json

import pytest

from lc_async_pipelines import cli


def _rows(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("".join(f"topic {i} about lanes\n" for i in range(40)))
    return path


def _run(tmp_path, capsys, *extra):
    argv = ["run", "--prompt", str(tmp_path / "p.txt"), "--input", str(_rows(tmp_path)),
            "--output", str(tmp_path / "o.jsonl"), *extra]  # fmt: skip
    (tmp_path / "p.txt").write_text("Say: {input}\n")
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--lanes", "batch,flx", "--deadline", "6h"], "unknown lane 'flx' (did you mean 'flex'?)"),
        (["--lanes", "batch,batch", "--deadline", "6h"], "lane 'batch' given twice"),
        (["--lanes", "batch,,standard", "--deadline", "6h"], "expected lanes separated by commas"),
        (["--lanes", "batch,standard", "--deadline", "2001-01-01T00:00"], "is in the past"),
        (["--lanes", "batch,standard", "--deadline", "0s"], "no time at all"),
        (["--lanes", "batch,standard", "--deadline", "soon"], "expected a duration"),
        (["--lanes", "batch,standard", "--deadline=-5m"], "expected a duration"),
        (["--lanes", "batch,standard"], "--lanes needs --deadline"),
        (["--deadline", "6h"], "--deadline goes with --lanes"),
        (["--lanes", "standard", "--deadline", "1h", "--engine", "ray"], "drop --engine ray"),
        (["--lanes", "batch", "--deadline", "1h", "--batch-api"], "drop --batch-api"),
        (["--lanes", "batch", "--deadline", "1h", "--stream"], "drop --stream"),
        (["--lanes", "flex", "--deadline", "1h", "--lane", "flex"], "give one of them"),
        (["--lanes", "batch,standard", "--deadline", "1h", "--embedded"], "no batch tier"),
        (
            ["--lanes", "flex,standard", "--deadline", "1h", "-m", "anthropic:claude-x"],
            "not an OpenAI model",
        ),
    ],
)
def test_a_careless_lanes_value_is_one_line_and_exit_2(tmp_path, capsys, extra, says) -> None:
    code, _, err = _run(tmp_path, capsys, *extra)
    assert code == 2
    assert says in err
    assert "\n" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_durations_and_times_are_read(tmp_path, capsys, monkeypatch) -> None:
    from lc_async_pipelines.cli._lanes_args import deadline

    monkeypatch.setattr("time.time", lambda: 1_000_000.0)
    assert deadline("90s") == 1_000_090.0
    assert deadline("1h30m") == 1_005_400.0
    assert deadline("1D") == 1_086_400.0


def test_the_dry_run_prints_the_plan_and_calls_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    code, out, err = _run(
        tmp_path, capsys, "-m", "gpt-4o-mini", "--lanes", "batch,flex,standard",
        "--deadline", "6h", "--max-cost", "20", "--rpm", "600", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["items"] == 40
    assert sum(lane["items"] for lane in plan["lanes"].values()) == 40
    assert plan["cost_usd"] < plan["all_standard_usd"]  # cheaper lanes first
    assert plan["meets_deadline"]
    assert "plan: 40 items by 6h" in err and "batch" in err
    assert not (tmp_path / "o.jsonl").exists()
