"""A dry run prices the model named with -m, key or no key: it sends nothing."""

import json

import pytest

from lc_async_pipelines import cli
from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME


@pytest.fixture
def no_endpoint(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL", "PIPELINES_EMBEDDED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    (tmp_path / "docs.txt").write_text("The council voted on Tuesday to build a bridge.\n")
    return ["run", "summary", "--input", "docs.txt", "--output", "out.jsonl", "--dry-run"]


def estimate(argv, capsys):
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    return json.loads(out)["estimate"], err


def test_a_named_model_with_no_key_is_priced_and_the_note_says_a_run_would_not_use_it(
    no_endpoint, capsys
):
    named, err = estimate([*no_endpoint, "-m", "gpt-4o-mini"], capsys)
    assert named["model"] == "gpt-4o-mini" and named["cost_usd"] > 0
    assert "no OPENAI_API_KEY or OPENAI_BASE_URL is set" in err and "gpt-4o-mini" in err


@pytest.mark.parametrize("extra", [[], ["--embedded", "-m", "gpt-4o-mini"]])
def test_no_model_named_or_embedded_asked_for_prices_the_embedded_model(no_endpoint, capsys, extra):
    embedded, err = estimate([*no_endpoint, *extra], capsys)
    assert embedded["model"] == EMBEDDED_MODEL_NAME and embedded["cost_usd"] == 0
    assert "note:" not in err
