"""How fast the command line answers: --help, --version, an argument error, and a bad target.

Each command runs ``--repeat`` times in a fresh process; the script prints the
median and worst wall time, and, in the same run, the cost of importing
``langchain_openai`` (what ``pipelines --help`` used to pay) for scale.

    python -m benchmarks.cli_startup --repeat 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "pipelines --help": [str(BIN / "pipelines"), "--help"],
    "pipelines run --help": [str(BIN / "pipelines"), "run", "--help"],
    "pipelines --version": [str(BIN / "pipelines"), "--version"],
    "argument error (--rpm -1)": [
        str(BIN / "pipelines"), "run", "story", "--input", "x.txt", "--output", "o.jsonl",
        "--rpm", "-1",
    ],
    "unknown pipeline name": [
        str(BIN / "pipelines"), "run", "nope", "--input", "x.txt", "--output", "o.jsonl",
    ],
    "import lc_async_pipelines": [sys.executable, "-c", "import lc_async_pipelines"],
    "import langchain_openai (reference)": [sys.executable, "-c", "import langchain_openai"],
}  # fmt: skip


def measure(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(f"| command | median s | max s |  ({args.repeat} runs each)")
    print("|---|---|---|")
    for name, cmd in COMMANDS.items():
        times = measure(cmd, args.repeat)
        print(f"| {name} | {statistics.median(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
