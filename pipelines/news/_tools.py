"""Async LangChain tools over the fetcher, and the fixed chain that runs them without tool calls.

Both tools read the same page: they share one download per URL (a task per
URL, so two tools asking at once wait on the same request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, ConfigDict

from lc_async_pipelines import telemetry
from lc_async_pipelines._text import CHARS_PER_TOKEN
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.news._analysis import NewsAnalysis, build_news_analysis_chain
from lc_async_pipelines.news._extract import PageText
from lc_async_pipelines.news._fetch import Fetched, Fetcher
from lc_async_pipelines.news._workers import Extractor

FETCH_ARTICLE = "fetch_article"
ARTICLE_METADATA = "article_metadata"
# What an article may take of the prompt: the embedded model's 4,096-token
# window holds this, the instructions and the JSON answer.
DEFAULT_ARTICLE_TOKENS = 2_500
_PAGES_KEPT = 256


class NewsReport(BaseModel):
    """What the news task writes for one article: where it came from, and its analysis.

    Attributes:
        url: the article's URL as fetched.
        title, author, published, site: from the page's metadata (``published``
            as ISO 8601), None when the page does not say.
        analysis: the model's :class:`NewsAnalysis`.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    title: str | None = None
    author: str | None = None
    published: str | None = None
    site: str | None = None
    analysis: NewsAnalysis


class _Pages:
    """One download per URL, shared by the tools (the last 256 pages kept)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._tasks: dict[str, asyncio.Task[Fetched]] = {}

    async def get(self, url: str) -> Fetched:
        task = self._tasks.get(url)
        if task is None:
            if len(self._tasks) >= _PAGES_KEPT:
                self._tasks.pop(next(iter(self._tasks)))
            task = asyncio.ensure_future(self.fetcher.get(url, expect="html"))
            # retrieved here too: a caller cancelled by its deadline may never look
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._tasks[url] = task
        try:
            # shield: one caller cancelled (its item's deadline) leaves the other's wait intact
            return await asyncio.shield(task)
        except BaseException:
            if task.done():
                self._tasks.pop(url, None)  # a failed download is tried afresh next time
            raise


def news_tools(
    fetcher: Fetcher,
    *,
    article_tokens: int = DEFAULT_ARTICLE_TOKENS,
    extractor: Extractor | None = None,
) -> list[BaseTool]:
    """Return the async tools ``[fetch_article, article_metadata]``, reading pages via ``fetcher``.

    - ``fetch_article(url)``: the article's title and main text (trafilatura),
      cut to about ``article_tokens`` tokens; artifact: the
      :class:`~lc_async_pipelines.news.PageText`.
    - ``article_metadata(url)``: JSON of ``title``, ``author``, ``published``
      (ISO 8601) and ``site`` from the page's metadata; artifact: the same dict.

    Both have ``response_format="content_and_artifact"``: invoked with a
    ``ToolCall`` they return a ``ToolMessage`` whose ``artifact`` holds the
    structured value. Pages are read in ``extractor``'s worker processes,
    each bounded in time and memory; without one, the tools make their own
    (``Extractor.for_pages(fetcher.limits)``), whose idle
    workers end when it is garbage-collected or this process ends. Give one
    you close (``async with``) to end them at a known point.

    Raises:
        FetchError: on invocation, the page cannot be fetched, holds no text,
            or is too slow or too large to read (see :class:`Extractor`).
    """
    pages = _Pages(fetcher)
    reader = extractor or Extractor.for_pages(fetcher.limits)
    max_chars = int(article_tokens * CHARS_PER_TOKEN)

    @tool(FETCH_ARTICLE, response_format="content_and_artifact")
    async def fetch_article(url: str) -> tuple[str, PageText]:
        """Fetch the news article at `url`; return its title and text."""
        with _tool_span(FETCH_ARTICLE):
            page = await pages.get(url)
            text = await reader.page(page.body, page.url)
        body = text.text[:max_chars]
        return (f"{text.title}\n\n{body}" if text.title else body), text

    @tool(ARTICLE_METADATA, response_format="content_and_artifact")
    async def article_metadata(url: str) -> tuple[str, dict[str, str | None]]:
        """Read the publication date, author, title and site name of the article at `url`."""
        with _tool_span(ARTICLE_METADATA):
            page = await pages.get(url)
            meta = await reader.metadata(page.body, page.url)
        return json.dumps(meta, ensure_ascii=False), meta

    return [fetch_article, article_metadata]


def _tool_span(name: str) -> contextlib.AbstractContextManager[Any]:
    """The tool call's span (``execute_tool NAME``) when telemetry is on, else nothing."""
    tel = telemetry.current()
    return contextlib.nullcontext() if tel is None else tel.tool(name)


def tool_call(tool_name: str, url: str, call_id: str) -> dict[str, Any]:
    """Return a LangChain ``ToolCall`` asking ``tool_name`` about ``url``."""
    return {"name": tool_name, "args": {"url": url}, "id": call_id, "type": "tool_call"}


def report_from(url: str, messages: Sequence[ToolMessage], analysis: NewsAnalysis) -> NewsReport:
    """Build the :class:`NewsReport` of ``url`` from the tools' messages and the analysis."""
    meta: dict[str, Any] = {}
    for message in messages:
        if message.name == ARTICLE_METADATA and isinstance(message.artifact, dict):
            meta.update({k: v for k, v in message.artifact.items() if v})
        elif message.name == FETCH_ARTICLE and isinstance(message.artifact, PageText):
            page = message.artifact
            fields = {"title": page.title, "author": page.author}
            fields |= {"published": page.published, "site": page.site}
            for key, value in fields.items():
                if value and key not in meta:
                    meta[key] = value
    return NewsReport(
        url=url,
        title=meta.get("title"),
        author=meta.get("author"),
        published=meta.get("published"),
        site=meta.get("site"),
        analysis=analysis,
    )


def _by_name(tools: Sequence[BaseTool]) -> dict[str, BaseTool]:
    found = {t.name: t for t in tools}
    if FETCH_ARTICLE not in found:
        names = ", ".join(found) or "none"
        msg = f"the news tools need a {FETCH_ARTICLE!r} tool; got: {names}"
        raise ConfigurationError(msg)
    return found


def build_news_tool_chain(
    llm: ChatModel, tools: Sequence[BaseTool], *, max_words: int = 40
) -> Runnable[str, NewsReport]:
    """Build the fixed-steps news chain: URL in, :class:`NewsReport` out (models without tools).

    The same tools a tool-calling agent gets (:func:`news_tools`) run as fixed
    steps: every tool is called with the URL, concurrently, then the article's
    text goes through :func:`~lc_async_pipelines.news.build_news_analysis_chain`.

    Args:
        llm: the chat model (injected).
        tools: :func:`news_tools`, or tools with the same names and arguments.
        max_words: the summary's length in words.

    Returns:
        ``Runnable[str, NewsReport]``.

    Raises:
        ConfigurationError: no ``fetch_article`` tool among ``tools``.
        FetchError: on invocation, the article cannot be fetched.
    """
    found = _by_name(tools)
    analyse = build_news_analysis_chain(llm, max_words=max_words)

    async def run(url: str, config: RunnableConfig) -> NewsReport:
        url = url.strip()
        calls = [tool_call(name, url, f"fixed-{i}") for i, name in enumerate(found)]
        messages: list[ToolMessage] = await asyncio.gather(
            *(found[c["name"]].ainvoke(c, config) for c in calls)
        )
        article = next(m for m in messages if m.name == FETCH_ARTICLE)
        analysis = await analyse.ainvoke(str(article.content), config)
        return report_from(url, messages, analysis)

    chain: Runnable[str, NewsReport] = RunnableLambda(run, name="news_tools_chain")
    return chain.with_types(input_type=str, output_type=NewsReport)
