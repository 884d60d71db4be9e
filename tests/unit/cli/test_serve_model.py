"""``pipelines serve-model``: its flags, and the llama-server command line they make."""

import pytest

from lc_async_pipelines import cli, embedded
from lc_async_pipelines.errors import EmbeddedModelError


@pytest.fixture
def commands(monkeypatch, tmp_path):
    """The command lines serve-model would run; no llama-server is started."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    monkeypatch.delenv("PIPELINES_EMBEDDED_THREADS", raising=False)
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "llama-server"))
    monkeypatch.setenv("PIPELINES_MODEL_PATH", str(tmp_path / "model.gguf"))
    seen: list[list[str]] = []

    class Recording(embedded.EmbeddedModelServer):
        def start(self):
            seen.append(self.command())
            raise EmbeddedModelError("not started in unit tests")

    monkeypatch.setattr(embedded, "EmbeddedModelServer", Recording)
    return seen


def threads_of(command):
    return command[command.index("--threads") + 1] if "--threads" in command else None


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_threads_must_be_a_positive_integer(commands, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve-model", "--threads", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and value in err and err.count("\n") == 1
    assert commands == []


def test_threads_reach_the_llama_server_command_line(commands):
    assert cli.main(["serve-model", "--threads", "1", "--parallel", "2"]) == 2  # the stub's error
    assert threads_of(commands[0]) == "1"
    assert commands[0][commands[0].index("--parallel") + 1] == "2"


def test_without_the_flag_the_setting_applies_else_llama_cpp_chooses(commands, monkeypatch):
    cli.main(["serve-model"])
    monkeypatch.setenv("PIPELINES_EMBEDDED_THREADS", "3")
    cli.main(["serve-model"])
    cli.main(["serve-model", "--threads", "2"])  # the flag wins
    assert [threads_of(c) for c in commands] == [None, "3", "2"]


def test_a_bad_thread_setting_is_one_line_naming_it_and_exit_2(commands, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINES_EMBEDDED_THREADS", "0")
    assert cli.main(["serve-model"]) == 2
    err = capsys.readouterr().err
    assert "PIPELINES_EMBEDDED_THREADS" in err and err.count("\n") == 1
    assert commands == []
