"""The news analysis on the embedded model over real articles: pages that state no date, and the tone's log-probabilities."""

import html
import json

import httpx
import pytest

from lc_async_pipelines.news import Fetcher, FetchLimits, build_news_tool_chain, news_tools
from lc_async_pipelines.news._analysis import SUMMARY_MIN_WORDS
from lc_async_pipelines.news._tone import (
    CONTENT_FREE,
    TONES,
    _asks_logprobs,
    build_tone_step,
    tone_probabilities,
)
from lc_async_pipelines.prompts.news import NEWS_TONE_WORD_PROMPT

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


async def test_the_embedded_model_gives_the_tones_log_probabilities(llm, data_dir):
    """llama-server returns ``logprobs`` through LangChain, so the tone is calibrated, not chosen."""
    rows = json.loads((data_dir / "news_summaries" / "writer_summaries.json").read_text())
    texts = list({row["article_id"]: row["article"] for row in rows}.values())[:2]
    assert _asks_logprobs(llm)
    ask = NEWS_TONE_WORD_PROMPT | llm.bind(logprobs=True, top_logprobs=20, max_tokens=1)
    for text in [*CONTENT_FREE, *(" ".join(t.split()[:WORDS]) for t in texts)]:
        probabilities = tone_probabilities(await ask.ainvoke({"article": text}))
        # None would mean no logprobs, or no tone among the 20 likeliest first tokens
        assert probabilities is not None, text
        assert sum(probabilities.values()) == pytest.approx(1.0)
    tones = await build_tone_step(llm).abatch([" ".join(t.split()[:WORDS]) for t in texts])
    assert set(tones) <= set(TONES)
