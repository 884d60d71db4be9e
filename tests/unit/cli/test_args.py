"""Argument errors: one line naming the flag, exit 2; and --version."""

import re

import pytest

from lc_async_pipelines import cli


@pytest.mark.parametrize(
    "flags",
    [
        ["--concurrency", "0"],
        ["--rpm", "-5"],
        ["--tpm", "nan"],
        ["--limit", "-1"],
        ["--item-timeout", "0"],
    ],
)
def test_numeric_flags_out_of_range_exit_2_naming_the_flag(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "story", "--input", "x.txt", "--output", "o.jsonl", *flags])
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_version(capsys):
    from lc_async_pipelines import __version__

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out


def test_the_commands_are_listed_in_their_order(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    order = ["run", "news", "serve", "list", "serve-model", "install-model", "build-server"]
    positions = [re.search(rf"^    {re.escape(name)}\s", out, re.M).start() for name in order]
    assert positions == sorted(positions)
