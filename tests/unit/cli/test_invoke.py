"""``pipelines invoke``: one input through a pipeline, its output on stdout."""

import io
import json

import pytest

from lc_async_pipelines import cli
from tests.unit.cli.helpers import use_model
from tests.unit.fakes import cycling_llm


@pytest.fixture
def echo_prompt(tmp_path):
    path = tmp_path / "review.txt"
    path.write_text("Review of {product}: {stars} stars. {text}\n")
    return path


def test_text_in_output_out(fake_session, capsys):
    assert cli.main(["invoke", "story", "a fox"]) == 0
    assert capsys.readouterr().out == "A fine result.\n"


def test_stream_writes_the_finished_text_once(fake_session, capsys):
    assert cli.main(["invoke", "story", "a fox", "--stream"]) == 0
    assert capsys.readouterr().out == "A fine result.\n"


def test_json_gives_output_usage_and_times(fake_session, capsys):
    assert cli.main(["invoke", "summary", "some text", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["output"] == "A fine result."
    assert set(shown) >= {"usage", "cost_usd", "latency_s", "ttft_s", "model"}


def test_stdin_is_read_for_a_dash(fake_session, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long article\n"))
    assert cli.main(["invoke", "summary", "-"]) == 0
    assert capsys.readouterr().out == "A fine result.\n"


def test_a_prompt_file_takes_variables_and_input_fills_the_last(monkeypatch, capsys, echo_prompt):
    seen = []
    model = cycling_llm("ok")
    use_model(monkeypatch, model)
    original = type(model).ainvoke

    async def spy(self, value, *args, **kwargs):
        seen.append(value.to_string().strip())
        return await original(self, value, *args, **kwargs)

    monkeypatch.setattr(type(model), "ainvoke", spy)
    argv = ["invoke", "--prompt", str(echo_prompt), "-v", "product=kettle", "-v", "stars=2"]
    assert cli.main([*argv, "it leaks"]) == 0
    assert capsys.readouterr().out == "ok\n"
    assert seen == ["Human: Review of kettle: 2 stars. it leaks"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke"], "give a TARGET"),
        (["invoke", "stroy", "x"], "(did you mean 'story'?)"),
        (["invoke", "story", "x", "-v", "a=b"], "-v/--var goes with --prompt"),
        (["invoke", "--prompt", "nope.txt", "x"], "--prompt nope.txt: no such file"),
    ],
)
def test_mistakes_exit_2_in_one_line(fake_session, capsys, argv, message, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_prompt_variable_left_unset_is_named(fake_session, capsys, echo_prompt, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())  # typed at a terminal: stdin is not read
    argv = ["invoke", "--prompt", str(echo_prompt), "-v", "product=kettle"]
    assert cli.main(argv) == 2
    assert "the prompt needs 'stars', 'text': give -v stars=... -v text=..." in (
        capsys.readouterr().err
    )


def test_a_failed_call_exits_1_with_its_class(monkeypatch, capsys):
    from langchain_core.language_models import FakeListChatModel

    class Broken(FakeListChatModel):
        async def _agenerate(self, *args, **kwargs):
            raise ValueError("the model broke")

    use_model(monkeypatch, Broken(responses=["x"]))
    assert cli.main(["invoke", "story", "a fox", "--max-retries", "0"]) == 1
    assert "ValueError: the model broke" in capsys.readouterr().err
