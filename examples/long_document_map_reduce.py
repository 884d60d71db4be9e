"""A long public-domain story summarized by map-reduce over chunks.

Run: ``python examples/long_document_map_reduce.py [INDEX]`` (story INDEX of SQuALITY, default 0).
"""

import asyncio
import json
import sys

from _paths import DATA

from lc_async_pipelines import build_map_reduce_summary_chain, chat_model_session, split_into_chunks
from lc_async_pipelines.callbacks import MetricsCallbackHandler


async def main(index: int) -> None:
    lines = (DATA / "long_stories" / "squality_test.jsonl").read_text().splitlines()
    story = json.loads(lines[index])
    document = story["document"]
    print(f"{len(document.split())} words, {len(split_into_chunks(document))} chunks")
    metrics = MetricsCallbackHandler()
    async with chat_model_session() as llm:
        chain = build_map_reduce_summary_chain(llm, max_words=120)
        summary = await chain.ainvoke(document, {"max_concurrency": 4, "callbacks": [metrics]})
    print(f"\nSummary:\n{summary}\n")
    human = story["questions"][0]["responses"][0]["response_text"]
    print(f"A human's plot summary:\n{human[:600]}...\n")
    print(f"{len(metrics.calls)} model calls, usage {metrics.usage()}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
