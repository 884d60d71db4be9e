"""Peak memory of the runner as the item count grows: prints figures, asserts nothing.

Each level runs in a fresh child process (so peaks do not mix) that streams N
generated items through a chain and ``ChatOpenAI`` against the mock server and
appends records to a temporary file; the child reports its peak RSS.

Run: ``.venv/bin/python -m benchmarks.memory --levels 1000 10000``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from benchmarks.rate_limits import mock
from lc_async_pipelines import ModelSettings, make_chat_model
from lc_async_pipelines.runner import Item, RunOptions, run_items, write_records


def items(n: int) -> Iterator[Item]:
    for i in range(n):
        yield Item(str(i), i + 1, f"item {i}")


async def child(base: str, n: int) -> None:
    settings = ModelSettings(api_key="x", base_url=base + "/v1", model="mock", max_tokens=8)
    prompt = ChatPromptTemplate.from_messages([("human", "{text}")])
    chain = {"text": lambda t: t} | prompt | make_chat_model(settings) | StrOutputParser()
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "out.jsonl").open("w") as out:
        summary = await write_records(run_items(chain, items(n), RunOptions(concurrency=64)), out)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": n, "done": summary.done, "peak_rss_mb": round(peak_mb, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child", nargs=2, metavar=("BASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child[0], int(args.child[1])))
        return
    rows = []
    with mock(rpm=10**9, latency=0.0) as base:
        for n in args.levels:
            cmd = [sys.executable, "-m", "benchmarks.memory", "--child", base, str(n)]
            rows.append(json.loads(subprocess.check_output(cmd).decode().strip().splitlines()[-1]))
    for row in rows:
        ratio = row["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(
            f"{row['items']} items: {row['done']} done, peak RSS {row['peak_rss_mb']} MB "
            f"({ratio:.2f}x the first level)"
        )


if __name__ == "__main__":
    main()
