"""The examples of README.md and docs/ that need a model run as written, on the embedded model.

A ```` ```python ```` block on the line after ``<!-- test: embedded model -->``
is such an example (today: the README's "Use it from an app"). Each runs as a
script of its own, in a temporary folder holding a link to ``examples/``, with
``PIPELINES_EMBEDDED_URL`` pointing at the session's embedded server and no
endpoint settings from the caller's shell. The other blocks, and the whole
convention, are described in ``tests/unit/test_docs.py``, which runs the
examples that need no model.
"""

from pathlib import Path

import pytest

from tests.unit.test_docs import Block, example_env, examples, run_example


@pytest.mark.parametrize("block", examples(embedded=True), ids=lambda b: b.name)
def test_example_runs_on_the_embedded_model(block: Block, embedded_server, tmp_path: Path):
    env = example_env(PIPELINES_EMBEDDED_URL=embedded_server.base_url)
    done = run_example(block, tmp_path, env)
    assert done.returncode == 0, f"{block.name}\n{done.stderr[-2000:]}"
    if block.path.name == "README.md":
        check_use_it_from_an_app(block, done.stdout, tmp_path)


def check_use_it_from_an_app(block: Block, stdout: str, workdir: Path) -> None:
    """The README's app example: the model it names, a record per document, the cache file."""
    section = block.path.read_text().split("## Use it from an app", 1)[1].split("\n## ", 1)[0]
    assert block.code in section
    lines = stdout.splitlines()
    assert lines[0].startswith("model smollm2-135m-instruct (embedded)")
    ids = {"tides", "bread"}
    records = [line.split() for line in lines if line.split()[:1] and line.split()[0] in ids]
    assert len(records) == 2 and all(r[1] == "True" for r in records)
    assert (workdir / "out" / "cache.sqlite").is_file()
