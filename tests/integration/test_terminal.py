"""`pipelines run --stream` read off a real pseudo-terminal (pyte emulates the screen), and piped.

Two summaries stream at once from the mock server (a word every 50 ms, each
reply far past the word limit, so the chain trims it): while they stream the
bar is the screen's last line; at the end the text on screen for each item is
its record's output, and the short table follows. Piped, stdout holds the
outputs as plain lines and nothing holds a control character.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte

from tests.integration.mock import MockConfig, mock_server

ROWS, COLS = 60, 120
DOCS = {
    "doc0": "The council met on Monday. It approved a new budget for schools. Teachers "
    "welcomed the news. Parents asked for more buses. The mayor said the plan starts in spring.",
    "doc1": "A storm hit the coast. Roads were closed for hours. Power failed in many homes. "
    "Crews worked through the night. By morning most lights were back on.",
}


def command(tmp_path: Path, *extra: str) -> list[str]:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in DOCS.items()))
    return [sys.executable, "-m", "lc_async_pipelines", "run", "summary", "--input", str(src),
            "--output", str(tmp_path / "o.jsonl"), "--max-words", "10", "--concurrency", "2",
            "--stream", *extra]  # fmt: skip


def environment(base_url: str) -> dict[str, str]:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test",
           "PIPELINES_MODEL": "mock", "TERM": "xterm-256color",
           "COLUMNS": str(COLS), "LINES": str(ROWS)}  # fmt: skip
    for name in ("PIPELINES_EMBEDDED_URL", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    return env


def run_on_a_terminal(
    cmd: list[str], env: dict[str, str]
) -> tuple[int, list[list[str]], list[str]]:
    """Run ``cmd`` on a pseudo-terminal: (exit code, the screens seen while it ran, the last)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen(cmd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    frames: list[list[str]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.02)
        if not ready:  # nothing more for now: a whole frame is on screen
            if proc.poll() is not None:
                break
            frames.append([line.rstrip() for line in screen.display])
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        stream.feed(data)
    os.close(master)
    return proc.wait(timeout=30), frames, [line.rstrip() for line in screen.display]


def last_line(lines: list[str]) -> str:
    filled = [line for line in lines if line.strip()]
    return filled[-1] if filled else ""


def block_of(lines: list[str], tag: str) -> str:
    """The text printed for ``tag``: its ``[tag]`` line and the wrapped lines after it."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"[{tag}] "))
    ends = (i for i in range(start + 1, len(lines)) if not lines[i].strip() or "[" in lines[i][:1])
    end = next((i for i in ends), len(lines))
    end = min([end, *(i for i in range(start, end) if lines[i].startswith("(trimmed: "))])
    return " ".join(" ".join(lines[start:end]).split())[len(f"[{tag}] ") :]


def test_streamed_text_streams_above_the_bar_and_ends_as_the_records_hold_it(tmp_path):
    with mock_server(MockConfig(token_delay_s=0.05)) as base_url:
        code, frames, final = run_on_a_terminal(command(tmp_path), environment(base_url))
    assert code == 0, "\n".join(final)
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())}
    streaming = [f for f in frames if sum(line.startswith(("[doc0]", "[doc1]")) for line in f) == 2]
    streaming = [f for f in streaming if not any("(trimmed" in line for line in f)]
    assert streaming, "no screen showed both items streaming"
    for frame in streaming:  # both items in flight: the bar is the last line
        assert "items/s" in last_line(frame), "\n".join(frame)
    assert any(len(block_of(f, "doc0").split()) > 20 for f in streaming)  # past the limit, live

    for tag, record in records.items():
        assert record["error"] is None
        assert block_of(final, tag) == " ".join(record["output"].split())
    text = "\n".join(final)
    assert text.count("(trimmed: ") == 2  # each trim said, not hidden
    assert "\n  done     2\n  failed   0\n" in text
    assert "  cost     unpriced" in text and f"  records  {tmp_path / 'o.jsonl'}" in text


def test_piped_the_outputs_are_plain_lines_and_nothing_holds_a_control_character(tmp_path):
    with mock_server(MockConfig()) as base_url:
        proc = subprocess.run(
            [*command(tmp_path), "--json"],
            env=environment(base_url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    *shown, summary = proc.stdout.splitlines()
    assert sorted(shown) == sorted(f"[{r['id']}] {r['output']}" for r in records)
    assert json.loads(summary)["summary"]["done"] == 2
    assert "  done     2" in proc.stderr.splitlines()
