"""Where the examples find the shared real input (``../shared/data`` beside the project)."""

import os
from pathlib import Path

DATA = Path(
    os.environ.get("PIPELINES_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)

# The project's root: the notebooks start the local news server of benchmarks/.
ROOT = Path(__file__).resolve().parents[1]
