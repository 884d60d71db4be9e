"""The exit codes: one enum, listed in one docstring, and no bare number returned by the CLI."""

import ast
import signal
from pathlib import Path

from lc_async_pipelines import cli
from lc_async_pipelines.cli import exit_codes
from lc_async_pipelines.cli.exit_codes import ExitCode

CLI = Path(cli.__file__).resolve().parent


def test_the_codes():
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "ITEMS_FAILED": 1,
        "USAGE": 2,
        "COST_CAP": 3,
        "WRITE_FAILED": 4,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }
    assert ExitCode.for_signal(signal.SIGINT) is ExitCode.INTERRUPTED
    assert ExitCode.for_signal(signal.SIGTERM) is ExitCode.TERMINATED
    assert ExitCode.for_items(0) is ExitCode.OK and ExitCode.for_items(2) is ExitCode.ITEMS_FAILED


def test_every_code_is_documented_in_one_place_and_main_points_there():
    doc = exit_codes.__doc__
    for code in ExitCode:
        assert f"\n{int(code):<5}  {code.name}" in doc
    assert "lc_async_pipelines.cli.exit_codes" in cli.main.__doc__


def test_no_command_returns_a_bare_number():
    bare = []
    for path in CLI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            value = getattr(node, "value", None) if isinstance(node, ast.Return) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, int):
                bare.append(f"{path.relative_to(CLI)}:{node.lineno}")
    assert bare == []


def test_an_unknown_target_exits_with_the_usage_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("topic\n")
    code = cli.main(["run", "nope", "--input", "x.txt", "--output", "o.jsonl"])
    assert code is ExitCode.USAGE
