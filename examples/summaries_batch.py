"""A batch of news summaries with ``abatch`` and ``max_concurrency``.

Run: ``python examples/summaries_batch.py [N]`` (N articles, default 4).
"""

import asyncio
import json
import sys
from pathlib import Path

from _paths import DATA

from lc_async_pipelines import build_summary_chain, chat_model_session
from lc_async_pipelines.callbacks import MetricsCallbackHandler


def load_articles(n: int) -> list[str]:
    path = DATA / "news_summaries" / "writer_summaries.json"
    if not path.is_file():  # no shared data: the two short documents shipped here
        lines = (Path(__file__).parent / "documents.jsonl").read_text()
        return [json.loads(line)["text"] for line in lines.splitlines()][:n]
    unique = dict.fromkeys(row["article"] for row in json.loads(path.read_text()))
    return list(unique)[:n]


async def main(n: int) -> None:
    articles = load_articles(n)
    metrics = MetricsCallbackHandler()
    async with chat_model_session() as llm:
        chain = build_summary_chain(llm, max_words=60)
        summaries = await chain.abatch(articles, {"max_concurrency": 4, "callbacks": [metrics]})
    for article, summary in zip(articles, summaries, strict=True):
        print(f"- {article[:70]!r}...\n  {summary}\n")
    print(f"{len(summaries)} summaries, usage {metrics.usage()}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
