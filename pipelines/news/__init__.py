"""News analysis: feeds fetched concurrently, async tools, structured analyses as they complete.

The task of the async guides, on this library's runner::

    async with model_session() as session, Fetcher(FetchLimits(per_host=4)) as fetcher:
        chain = build_news_tool_chain(session.llm, news_tools(fetcher), max_words=40)
        async for record in analyse_news(read_sources(Path("sources.txt")), chain, fetcher):
            print(record.id, record.output or record.error)

- :func:`build_news_analysis_chain`: article text in, :class:`NewsAnalysis` out
  (structured output; registered as the ``news`` pipeline).
- :func:`news_tools`: the async ``@tool`` functions ``fetch_article`` and
  ``article_metadata``; :func:`build_news_agent` hands them to a tool-calling
  model, :func:`build_news_tool_chain` runs them as fixed steps for a model
  that cannot call tools (the embedded one).
- :class:`Fetcher`, :func:`parse_feed`, :func:`extract_page`: HTTP with
  per-host limits, timeouts and a size cap (httpx); RSS, Atom and JSON Feed
  (feedparser); article text and metadata (trafilatura).
- :class:`Extractor`: :func:`extract_page` and :func:`page_metadata` in
  worker processes, each page bounded in time, CPU and memory.
- :func:`analyse_news`: sources to records, failures as records.

Names are imported on first use (PEP 562): the registry lists the ``news``
pipeline without loading the feed parser and the HTML extractor.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lc_async_pipelines.news._agent import build_news_agent
    from lc_async_pipelines.news._analysis import NewsAnalysis, build_news_analysis_chain
    from lc_async_pipelines.news._extract import PageText, extract_page, page_metadata
    from lc_async_pipelines.news._feeds import Article, FeedEntry, iter_articles, parse_feed
    from lc_async_pipelines.news._fetch import Fetched, Fetcher, FetchLimits, canonical_url
    from lc_async_pipelines.news._run import analyse_news, read_sources
    from lc_async_pipelines.news._tools import NewsReport, build_news_tool_chain, news_tools
    from lc_async_pipelines.news._workers import Extractor

__all__ = [
    "Article",
    "Extractor",
    "FeedEntry",
    "FetchLimits",
    "Fetched",
    "Fetcher",
    "NewsAnalysis",
    "NewsReport",
    "PageText",
    "analyse_news",
    "build_news_agent",
    "build_news_analysis_chain",
    "build_news_tool_chain",
    "canonical_url",
    "extract_page",
    "iter_articles",
    "news_tools",
    "page_metadata",
    "parse_feed",
    "read_sources",
]

_WHERE = {
    "build_news_agent": "_agent",
    "NewsAnalysis": "_analysis",
    "build_news_analysis_chain": "_analysis",
    "PageText": "_extract",
    "extract_page": "_extract",
    "page_metadata": "_extract",
    "FeedEntry": "_feeds",
    "parse_feed": "_feeds",
    "Article": "_feeds",
    "Fetched": "_fetch",
    "Fetcher": "_fetch",
    "FetchLimits": "_fetch",
    "canonical_url": "_fetch",
    "iter_articles": "_feeds",
    "analyse_news": "_run",
    "read_sources": "_run",
    "NewsReport": "_tools",
    "build_news_tool_chain": "_tools",
    "news_tools": "_tools",
    "Extractor": "_workers",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
