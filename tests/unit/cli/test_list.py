"""``pipelines list``: the registered pipelines and their options."""

from lc_async_pipelines import cli


def test_list(capsys):
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "story" in listing and "max_words=250" in listing and "summary" in listing
