"""Every ``examples/*.ipynb`` runs top to bottom in a Jupyter kernel on the embedded model."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {
        "news_analysis.ipynb",
        "story_pipeline.ipynb",
        "summary_pipeline.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, embedded_server, data_dir, monkeypatch):
    # The kernel inherits this environment: it shares the session's server.
    monkeypatch.setenv("PIPELINES_EMBEDDED_URL", embedded_server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError on any error, with the cell and traceback
    outputs = [
        o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    tables = [o for o in outputs if "text/markdown" in o.get("data", {}) and "|---|" in str(o)]
    assert tables, "the notebook ends with a table of latency and tokens"
    if path.name == "news_analysis.ipynb":  # it ends with the chart of tone by topic
        assert [o for o in outputs if "image/png" in o.get("data", {})]
    if os.environ.get("UPDATE_NOTEBOOKS"):  # keep the committed outputs current
        nbformat.write(book, path)
