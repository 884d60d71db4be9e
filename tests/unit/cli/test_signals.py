"""The one signal helper: the first SIGINT/SIGTERM stops gracefully, a second at once; 130/143."""

import asyncio
import os
import signal
import threading
import time

import pytest

from lc_async_pipelines import cli
from lc_async_pipelines.cli._signals import (
    StopSignals,
    stop_loop_on_signals,
    stop_thread_on_signals,
)
from lc_async_pipelines.cli.exit_codes import ExitCode
from tests.unit.cli.helpers import use_model
from tests.unit.fakes import FnChatModel


def test_first_signal_stops_gracefully_and_a_second_at_once(capsys):
    calls = []
    signals = StopSignals(
        lambda: calls.append("graceful"), lambda: calls.append("now"), first_message="first"
    )
    assert signals.exit_code is None
    signals.handle(signal.SIGTERM)
    assert calls == ["graceful"] and signals.exit_code == ExitCode.TERMINATED == 143
    signals.handle(signal.SIGINT)
    signals.handle(signal.SIGINT)
    assert calls == ["graceful", "now", "now"]
    assert signals.exit_code == 143  # the first signal names the code
    err = capsys.readouterr().err.splitlines()
    now = "stopping now; items in flight run again on resume"
    assert err == ["first", now, now]


def test_on_the_loop_the_first_sets_stop_and_the_second_cancels_the_task(capsys):
    async def command():
        stop = asyncio.Event()
        signals = stop_loop_on_signals(stop, grace_s=7)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 5)
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "cancelled", signals.exit_code
        return "slept", signals.exit_code

    assert asyncio.run(command()) == ("cancelled", ExitCode.INTERRUPTED)
    err = capsys.readouterr().err
    assert "in flight get 7 s (again to stop now)" in err and "stopping now" in err


def test_in_the_main_thread_the_second_raises_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt), stop_thread_on_signals(stop) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the second signal
    assert signals.exit_code == ExitCode.TERMINATED
    assert signal.getsignal(signal.SIGTERM) is before


def _slow_run(tmp_path, monkeypatch, grace, kills):
    """Run a story over slow items; send SIGINT at each of ``kills`` seconds."""
    from langchain_core.messages import AIMessage

    started = threading.Event()

    async def model(messages, **__):
        started.set()
        await asyncio.sleep(60)
        return AIMessage(content="late")

    use_model(monkeypatch, FnChatModel(fn=model))
    src = tmp_path / "t.txt"
    src.write_text("a\nb\n")

    def send():
        assert started.wait(30)
        for delay in kills:
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send)
    sender.start()
    argv = ["run", "story", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]
    begin = time.monotonic()
    code = cli.main([*argv, "--grace", str(grace)])
    sender.join()
    return code, time.monotonic() - begin


def test_run_stops_after_the_grace_on_one_sigint(tmp_path, monkeypatch, capsys):
    code, took = _slow_run(tmp_path, monkeypatch, grace=0.5, kills=[0.2])
    assert code == ExitCode.INTERRUPTED and took < 20
    err = capsys.readouterr().err  # a graceful stop writes the summary, says how to resume
    assert (tmp_path / "o.jsonl.summary.json").exists()
    assert "  stopped  run the same command to resume:\n  pipelines run story --input " in err


def test_run_stops_at_once_on_a_second_sigint(tmp_path, monkeypatch, capsys):
    code, took = _slow_run(tmp_path, monkeypatch, grace=60, kills=[0.2, 0.3])
    assert code == ExitCode.INTERRUPTED and took < 20
    assert "stopping now" in capsys.readouterr().err
