"""A 2,000-item job three ways against the mock, time scaled down: all standard, all batch, lanes.

Starts the mock (``benchmarks/mock_server.py``) on loopback for each run, with
time scaled so that one hour is ``--hour`` seconds (default 10: OpenAI's
"24 h" batch window is 4 minutes):

- the standard tier answers in 50 ms under the run's budget (``--rpm``,
  default 6,000 a minute: 100 requests a second);
- the flex tier (``service_tier=flex``) answers 3x slower and refuses
  ``--flex-refusals`` of its requests (default 20%) with a 429
  "resource unavailable";
- a batch takes ``--batch-hours`` (default 7 h) to do all its lines, its
  ``request_counts`` growing evenly as it is polled (``--batch-progress``).

Then, each in a fresh folder, ``pipelines run --prompt P --input topics.txt
-m gpt-4o-mini``:

a. all standard: ``--concurrency 256 --rpm R``;
b. all batch: ``--batch-api``;
c. lanes: ``--lanes batch,flex,standard --deadline 6h`` (scaled) ``--flex-wait``
   (scaled 15 min) ``--concurrency 256 --rpm R``.

Printed, in one table: cost (the records' ``cost_usd``, genai-prices'
gpt-4o-mini rates), cost against (a), wall time in scaled hours, the
deadline met or missed, items per lane, and the mock's count of prompts
served twice (a call paid twice; must be 0). Target: (c) meets the deadline
at <= 0.6x the cost of (a). Exit 1 when (c) misses it.

    python -m benchmarks.lanes                    # 2,000 items, 1 h = 10 s
    python -m benchmarks.lanes --items 500 --hour 5

Everything stays on loopback. The batch's wall time in (b) is when the run
saw its results: ``--batch-api`` polls with backoff up to 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.mock_server import spawn

ROOT = Path(__file__).resolve().parents[1]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
MODEL = "gpt-4o-mini"


@dataclass
class Outcome:
    """One run: what it cost, how long it took, which lane did what."""

    name: str
    wall_s: float
    code: int
    cost_usd: float
    done: int
    failed: int
    lanes: dict[str, int] = field(default_factory=dict)
    served_twice: int = 0
    cancelled: int = 0


def _env(base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(
        OPENAI_BASE_URL=base + "/v1",
        OPENAI_API_KEY="sk-bench-lanes",
        NO_PROXY="127.0.0.1,localhost",
        PIPELINES_TIMEOUT="30",
    )
    return env


def _run(name: str, base: str, folder: Path, flags: list[str]) -> Outcome:
    """Run ``pipelines run`` with ``flags`` against the mock at ``base``; read its summary."""
    (folder / "prompt.txt").write_text("Answer in one line: {input}\n", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "lc_async_pipelines",
        "run",
        "--prompt",
        str(folder / "prompt.txt"),
        "--input",
        str(folder.parent / "topics.txt"),
        "--output",
        str(folder / "out.jsonl"),
        "-m",
        MODEL,
        "--json",
        *flags,
    ]
    started = time.monotonic()
    done = subprocess.run(
        cmd, env=_env(base), capture_output=True, text=True, timeout=1800, check=False
    )
    wall = time.monotonic() - started
    (folder / "stderr.txt").write_text(done.stderr, encoding="utf-8")
    summary: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith('{"summary"'):
            summary = json.loads(line)["summary"]
    if not summary:
        print(f"{name}: no summary (exit {done.returncode}):\n{done.stderr[-2000:]}")
    records = [json.loads(x) for x in (folder / "out.jsonl").read_text().splitlines() if x]
    lanes: dict[str, int] = {}
    for record in records:
        lane = record.get("lane") or ("batch" if record.get("batch_saved_usd") else "standard")
        lanes[lane] = lanes.get(lane, 0) + 1
    stats = httpx.get(base + "/stats", timeout=10).json()
    return Outcome(
        name,
        wall,
        done.returncode,
        float(summary.get("cost_usd") or 0.0),
        int(summary.get("done") or 0),
        int(summary.get("failed") or 0),
        lanes,
        len(stats.get("served_again", {})),
        int(stats.get("batches_cancelled", 0)),
    )


def _mock_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--latency",
        "0.05",
        "--rpm",
        str(args.rpm),
        "--batch-delay-s",
        str(args.batch_hours * args.hour),
        "--batch-progress",
        "--flex-unavailable-rate",
        str(args.flex_refusals),
        "--seed",
        "7",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--hour", type=float, default=10.0, help="seconds a scaled hour lasts")
    parser.add_argument("--deadline-hours", type=float, default=6.0)
    parser.add_argument("--batch-hours", type=float, default=7.0)
    parser.add_argument("--rpm", type=int, default=6000, help="the run's budget and the mock's")
    parser.add_argument("--flex-refusals", type=float, default=0.2)
    args = parser.parse_args()

    hour = args.hour
    deadline_s = args.deadline_hours * hour
    with tempfile.TemporaryDirectory(prefix="bench-lanes-") as tmp:
        root = Path(tmp)
        lines = "".join(f"topic {i:05d} about lanes\n" for i in range(args.items))
        (root / "topics.txt").write_text(lines, encoding="utf-8")
        common = ["--concurrency", "256", "--rpm", str(args.rpm)]
        runs = {
            "a. all standard": common,
            "b. all batch": ["--batch-api"],
            "c. lanes": [
                *common,
                "--lanes",
                "batch,flex,standard",
                "--deadline",
                f"{deadline_s:g}s",
                "--flex-wait",
                f"{0.25 * hour:g}",
            ],
        }
        outcomes = []
        for name, flags in runs.items():
            folder = root / name.split(".")[0]
            folder.mkdir()
            with spawn(*_mock_flags(args)) as base:
                outcomes.append(_run(name, base, folder, flags))
        return _report(args, outcomes, deadline_s)


def _report(args: argparse.Namespace, outcomes: list[Outcome], deadline_s: float) -> int:
    hour = args.hour
    base_cost = outcomes[0].cost_usd or float("nan")
    print(
        f"{args.items:,} items, 1 h = {hour:g} s (24 h batch window = {24 * hour:g} s); "
        f"deadline {args.deadline_hours:g} h = {deadline_s:g} s; a batch takes "
        f"{args.batch_hours:g} h; budget {args.rpm:,} RPM; flex: 3x latency, "
        f"{args.flex_refusals:.0%} refused"
    )
    print(
        f"{'run':<17}{'cost':>10}{'vs (a)':>8}{'wall':>9}{'deadline':>10}  "
        f"{'items per lane':<40}{'twice':>6}"
    )
    for o in outcomes:
        met = "met" if o.wall_s <= deadline_s and o.failed == 0 else "missed"
        per_lane = ", ".join(f"{k} {v:,}" for k, v in sorted(o.lanes.items()))
        print(
            f"{o.name:<17}${o.cost_usd:>9.4f}{o.cost_usd / base_cost:>7.2f}x"
            f"{o.wall_s / hour:>7.2f} h{met:>10}  {per_lane:<40}{o.served_twice:>6}"
        )
    lanes = outcomes[-1]
    ratio = lanes.cost_usd / base_cost
    ok = lanes.wall_s <= deadline_s and lanes.failed == 0 and ratio <= 0.6
    print(
        f"target (c): deadline met at <= 0.6x the cost of (a): {'yes' if ok else 'no'} "
        f"({ratio:.2f}x, {lanes.wall_s:.1f} s of {deadline_s:g} s; "
        f"batches cancelled: {lanes.cancelled}); wall includes the command's start-up"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
