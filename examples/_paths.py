"""Where the examples find the shared real input (``../shared/data`` beside the project)."""

import os
from pathlib import Path

DATA = Path(
    os.environ.get("PIPELINES_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
