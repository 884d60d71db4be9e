"""The README and the docs site say what is true: their examples run, their commands exist.

Code blocks in README.md and docs/**/*.md follow one convention, by the fence's
info string:

- ```` ```python ````: an example. It runs as a test, as a script of its own
  (a fresh Python process, working directory a temporary folder holding a link
  to ``examples/``), and must exit 0. Examples here need no model: they use
  LangChain's ``GenericFakeChatModel`` as a stand-in chat model. The
  environment is stripped of endpoint settings and points ``LLAMA_SERVER_BIN``
  at ``false``, so an example that starts the embedded model by mistake fails
  at once instead of building or starting a server.
- ```` ```python ```` on the line after ``<!-- test: embedded model -->``: an
  example that needs a real model. ``tests/integration/test_readme.py`` runs
  it on the embedded model; this module leaves it out.
- ```` ```py ````: a fragment (part of an example, or one that needs a service
  such as Redis, Ray or news feeds). It is highlighted as Python but not run.
- every other fence (``sh``, ``json``, ``toml``, ``text``) is not Python; in
  ``sh`` blocks every ``pipelines`` command line is checked below: its
  subcommand and each of its flags must be known to ``pipelines SUB --help``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_MARK = "<!-- test: embedded model -->"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    info: str
    code: str
    embedded: bool  # preceded by EMBEDDED_MARK

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every Markdown page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, match.start()) + 1
        info = match.group(1).strip()
        blocks.append(Block(path, line, info, match.group(2), before == EMBEDDED_MARK))
    return blocks


def examples(*, embedded: bool) -> list[Block]:
    """The ```python blocks: those that need the embedded model, or those that do not."""
    return [
        block
        for path in doc_files()
        for block in code_blocks(path)
        if block.info == "python" and block.embedded == embedded
    ]


def example_env(**extra: str) -> dict[str, str]:
    """The environment an example runs in: no endpoint from the caller's shell or .env."""
    env = {**os.environ, **extra}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL", "PIPELINES_EMBEDDED"):
        env.pop(name, None)
    return env


def run_example(block: Block, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``block`` as a script in ``workdir`` (with ``examples/`` linked into it)."""
    script = workdir / "example.py"
    script.write_text(block.code)
    (workdir / "examples").symlink_to(ROOT / "examples")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_convention_finds_examples_of_both_kinds():
    assert len(examples(embedded=False)) >= 5
    assert [b.path.name for b in examples(embedded=True)] == ["README.md"]
    marked = [b for p in doc_files() for b in code_blocks(p) if b.embedded]
    assert all(b.info == "python" for b in marked), [b.name for b in marked]


@pytest.mark.parametrize("block", examples(embedded=False), ids=lambda b: b.name)
def test_example_runs_without_a_model(block: Block, tmp_path: Path):
    env = example_env(LLAMA_SERVER_BIN="/bin/false", PIPELINES_CACHE_DIR=str(tmp_path / "cache"))
    done = run_example(block, tmp_path, env)
    assert done.returncode == 0, f"{block.name}\n{done.stdout[-1000:]}\n{done.stderr[-3000:]}"


# --- the command lines shown ---------------------------------------------------------


@cache
def known_flags(command: str) -> frozenset[str]:
    """The options ``pipelines COMMAND --help`` lists (COMMAND "" for the top level)."""
    args = [sys.executable, "-m", "lc_async_pipelines", *command.split(), "--help"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=example_env())
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout))


def subcommands() -> frozenset[str]:
    done = subprocess.run(
        [sys.executable, "-m", "lc_async_pipelines", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # argparse lists the subcommands under COMMAND, indented four spaces
    listed = frozenset(re.findall(r"^    ([a-z][\w-]*)(?:\s|$)", done.stdout, re.M))
    assert "run" in listed, done.stdout
    return listed


def command_lines(block: Block) -> list[list[str]]:
    """Each ``pipelines ...`` command of a shell block, as words (comments and env dropped)."""
    text = block.code.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for part in re.split(r"&&|;|\|", line.split(" #", 1)[0]):
            words = shlex.split(part.replace("&", " "), comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before it
                words.pop(0)
            if words and Path(words[0]).name == "pipelines":
                found.append(words[1:])
    return found


def shell_commands() -> list:
    return [
        pytest.param(f"{block.name}: pipelines {' '.join(words)}", words, id=f"{block.name}")
        for path in doc_files()
        for block in code_blocks(path)
        if block.info in ("sh", "bash", "console")
        for words in command_lines(block)
    ]


def test_the_docs_show_every_subcommand():
    shown = {param.values[1][0] for param in shell_commands() if param.values[1]}
    assert subcommands() <= shown


@pytest.mark.parametrize(("where", "words"), shell_commands())
def test_command_line_shown_exists(where: str, words: list[str]):
    assert words, where
    command = words[0]
    assert command in subcommands(), f"{where}: no subcommand {command!r}"
    flags = {w.split("=", 1)[0] for w in words[1:] if w.startswith("-") and w != "-"}  # "-": stdin
    unknown = flags - known_flags(command)
    assert not unknown, f"{where}: unknown flags {sorted(unknown)}"


def test_flags_named_on_the_command_line_page_exist():
    page = (ROOT / "docs" / "cli.md").read_text()
    named = set(re.findall(r"`(--[a-z][\w-]*)", page))
    known = set(known_flags("")).union(*(known_flags(c) for c in subcommands()))
    assert named and not named - known, sorted(named - known)


def test_readme_links_reach_files():
    # mkdocs --strict checks the links of docs/; README.md is outside the site
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local and all((ROOT / t).exists() for t in local), [
        t for t in local if not (ROOT / t).exists()
    ]
