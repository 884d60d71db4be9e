"""The news task end to end on the local news server: wall time, first analysis, schema-valid share.

Runs ``pipelines news`` as a user would (a subprocess, records file and all)
over the feeds of ``benchmarks/news_server.py`` (``--articles`` real articles
plus its broken cases), on the configured model (the embedded one with no
key), and reads the records back:

    python -m benchmarks.news_task --articles 50 --concurrency 4

Prints wall time, the time to the first analysis shown (the first ``✓`` line
on the command's stdout, from the command's start), the share of analyses
whose output validates against ``NewsAnalysis``'s JSON Schema, and one line
per broken case with the error its record holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema

from benchmarks.news_server import BROKEN_CASES, spawn, write_sources
from lc_async_pipelines.news import NewsReport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=40)
    args = parser.parse_args()
    schema = NewsReport.model_json_schema()
    with tempfile.TemporaryDirectory() as tmp, spawn("--articles", str(args.articles)) as site:
        sources = write_sources(site, Path(tmp) / "feeds.txt")
        out = Path(tmp) / "news.jsonl"
        cmd = [sys.executable, "-m", "lc_async_pipelines", "news", "--sources", str(sources)]
        cmd += ["--output", str(out), "--concurrency", str(args.concurrency)]
        cmd += ["--max-words", str(args.max_words), "--fetch-timeout", "5"]
        start = time.perf_counter()
        first: float | None = None
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if first is None and line.startswith("✓"):
                    first = time.perf_counter() - start
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in out.read_text().splitlines()]
    ok = [r for r in records if r["error"] is None]
    valid = 0
    for record in ok:
        try:
            jsonschema.validate(record["output"], schema)
            valid += 1
        except jsonschema.ValidationError:
            pass
    words = sorted(len(r["output"]["analysis"]["summary"].split()) for r in ok)
    print(f"articles: {args.articles}, concurrency {args.concurrency}, exit {proc.returncode}")
    print(f"records: {len(records)} ({len(ok)} analyses, {len(records) - len(ok)} errors)")
    print(f"wall: {wall:.1f} s; first analysis shown at {first or float('nan'):.1f} s")
    print(f"schema-valid: {valid}/{len(ok)} ({valid / max(1, len(ok)):.0%})")
    if words:
        print(f"summary words: median {words[len(words) // 2]} (asked {args.max_words})")
    failed = {r["input"]: r["error"] for r in records if r["error"] is not None}
    for path, cause in BROKEN_CASES.items():
        error = failed.get(site + path)
        shown = f"{error['type']}: {error['message']}" if error else "NO RECORD"
        print(f"  {path:22} expected {cause!r:14} got {shown}")


if __name__ == "__main__":
    main()
