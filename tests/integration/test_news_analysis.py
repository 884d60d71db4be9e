"""The news analysis on the embedded model over real articles served as pages that state no date."""

import html
import json

import httpx

from lc_async_pipelines.news import Fetcher, FetchLimits, build_news_tool_chain, news_tools
from lc_async_pipelines.news._analysis import SUMMARY_MIN_WORDS
from lc_async_pipelines.news._tone import TONES

ARTICLES = 5
WORDS = 500  # of each article: enough to judge it, short enough for a quick test


def _pages(data_dir) -> dict[str, str]:
    """The first articles of the shared news data as HTML pages, no date anywhere in the markup."""
    rows = json.loads((data_dir / "news_summaries" / "writer_summaries.json").read_text())
    texts = list({row["article_id"]: row["article"] for row in rows}.values())[:ARTICLES]
    pages = {}
    for i, text in enumerate(texts):
        words = text.split()[:WORDS]
        paragraphs = "".join(
            f"<p>{html.escape(' '.join(words[j : j + 60]))}</p>" for j in range(0, len(words), 60)
        )
        pages[f"/articles/{i}.html"] = (
            f"<html><head><title>Article {i}</title></head>"
            f"<body><article><h1>Article {i}</h1>{paragraphs}</article></body></html>"
        )
    return pages


async def test_real_articles_get_long_summaries_no_invented_date_and_a_chosen_tone(llm, data_dir):
    pages = _pages(data_dir)

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/html"}, text=pages[request.url.path]
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    async with Fetcher(FetchLimits(), client=client) as fetcher:
        chain = build_news_tool_chain(llm, news_tools(fetcher), max_words=40)
        urls = [f"http://news.test{path}" for path in pages]
        reports = await chain.abatch(urls, {"max_concurrency": 4})
    for report in reports:
        summary = report.analysis.summary
        assert len(summary.split()) >= SUMMARY_MIN_WORDS, summary
        # the real articles carry years in their text; none may become the date
        assert report.published is None, report.published
        assert report.analysis.tone in TONES
