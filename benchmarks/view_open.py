"""Opening a large records file in ``pipelines view``: time and peak memory; asserts nothing.

Writes N generated records (about 500 bytes each, 2% failed, 5% with a 429
retry) to a file, unless it is there already, then, in a fresh child process,
reads it the way the page's task does (:meth:`RunWatch.step` to the end),
reads a page of failed records and one search request, and prints the
figures: wall and CPU time, peak RSS, and RSS after the imports alone.

Run: ``.venv/bin/python -m benchmarks.view_open --records 1000000 --path /tmp/run.jsonl``
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

RATE_LIMITED = {"stage": "call", "error": "RateLimitError", "status": 429, "seconds": 0.2}


def record(i: int, rng: random.Random) -> dict[str, object]:
    failed = rng.random() < 0.02
    history = [{**RATE_LIMITED, "wait_s": 1.0}] if rng.random() < 0.05 else []
    return {
        "id": f"{i:08x}",
        "line": i + 1,
        "input": f"a lighthouse keeper's night number {i} on the harbour",
        "output": None if failed else f"The keeper climbed the stairs for the {i}th time.",
        "error": {"type": rng.choice(["APIError", "Timeout"]), "message": "server error"}
        if failed
        else None,
        "attempts": 1 + len(history),
        "latency_s": round(rng.expovariate(1 / 1.2), 3),
        "ttft_s": round(rng.expovariate(1 / 0.2), 3),
        "queued_s": 0.0,
        "usage": {"input_tokens": 40, "output_tokens": 30, "total_tokens": 70},
        "calls": 1,
        "throttled": len(history),
        "history": history,
        "history_dropped": 0,
        "cost_usd": 0.00002,
        "cache_saved_usd": 0.0,
        "batch_saved_usd": 0.0,
    }


def generate(path: Path, n: int) -> None:
    rng = random.Random(1)
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps(record(i, rng), ensure_ascii=False) + "\n")


def child(path: Path) -> None:
    from lc_async_pipelines.view import RunWatch

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    watch = RunWatch(path)
    watch.step()
    first = time.perf_counter() - start
    while watch.step():
        pass
    whole, whole_cpu = time.perf_counter() - start, time.process_time() - cpu
    records = watch.state()["progress"]["records"]
    t = time.perf_counter()
    watch.page(10_000, 25, failed_only=True)
    page_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    found = watch.search("no such text", 0, 25, failed_only=False)
    search_ms = (time.perf_counter() - t) * 1000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = path.stat().st_size / 1e6
    print(f"{records:,} records, {size:.0f} MB")
    print(f"first read (the page shows figures): {first * 1000:.0f} ms")
    print(f"whole file: {whole:.1f} s wall, {whole_cpu:.1f} s CPU")
    print(f"a page of failed records: {page_ms:.1f} ms; one search request: {search_ms:.0f} ms")
    print(f"  ({found.scanned:,} records scanned)")
    print(f"peak RSS {peak / 1024:.0f} MB; after the imports {imported / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--path", type=Path, required=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.path)
        return
    if not args.path.exists():
        generate(args.path, args.records)
    cmd = [sys.executable, "-m", "benchmarks.view_open", "--path", str(args.path), "--child"]
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
