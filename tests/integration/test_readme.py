"""The README's "Use it from an app" block runs as written, on the embedded model."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_use_it_from_an_app_block_runs(embedded_server, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from an app", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "app.py"
    script.write_text(code)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PIPELINES_EMBEDDED_URL": embedded_server.base_url}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PIPELINES_MODEL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("model smollm2-135m-instruct (embedded)")
    ids = {"tides", "bread"}
    records = [line.split() for line in lines if line.split()[:1] and line.split()[0] in ids]
    assert len(records) == 2 and all(r[1] == "True" for r in records)
    assert (tmp_path / "out" / "cache.sqlite").is_file()
