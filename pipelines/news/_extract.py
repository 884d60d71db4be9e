"""Article text and metadata from a page's HTML, by trafilatura (no network).

trafilatura (https://trafilatura.readthedocs.io/en/latest/corefunctions.html)
finds the main text of a page and reads its metadata: the ``<title>`` and
Open Graph / JSON-LD / ``<meta>`` tags for the title, author and site name,
and htmldate for the publication date, from the page's markup and address only
(``extensive_search`` off): htmldate's extensive search also reads dates out of the
text and guesses from a bare year, so a page without a date got ``2001-01-01``
from "lost its mill in 2001". Both functions are CPU-bound (tens of
milliseconds per page, but time quadratic in some hostile pages): the news
tools call them through :class:`~lc_async_pipelines.news.Extractor`, in worker
processes that can be stopped and are bounded in time and memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trafilatura
from trafilatura.settings import Document, set_date_params

from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news._fetch import shown_url

__all__ = ["PageText", "extract_page", "page_metadata"]


def _date_params() -> dict[str, Any]:
    # No extensive search: a date only where the page states one (<meta>,
    # JSON-LD, <time>, its URL), never one read out of the prose. Per call:
    # the latest date allowed is today.
    return set_date_params(extensive=False)


@dataclass(frozen=True)
class PageText:
    """An article's main text and metadata.

    Attributes:
        url: the page's URL (as given to :func:`extract_page`).
        title: the headline, None when the page has none.
        text: the main text, paragraphs separated by newlines, without
            navigation, boilerplate or comments, and without the headline
            when it opens the text.
        author: the byline, None when the page does not say.
        published: the publication date as ISO 8601 (``YYYY-MM-DD``), None
            when the page's markup and address state none (a date in the prose
            is not taken).
        site: the site's name, None when unknown.
    """

    url: str
    title: str | None
    text: str
    author: str | None
    published: str | None
    site: str | None


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text or None


def _document(doc: object) -> Document | None:
    return doc if isinstance(doc, Document) else None


def extract_page(html: bytes | str, url: str) -> PageText:
    """Extract an article's main text, title, author, date and site name from its HTML.

    Args:
        html: the page, as bytes (encoding detected) or text.
        url: the page's URL, for metadata read relative to it; nothing is fetched.

    Returns:
        The :class:`PageText`.

    Raises:
        FetchError: ``"no article text in the page"`` when trafilatura finds no main text.
    """
    doc = _document(
        trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_images=False,
            date_extraction_params=_date_params(),
        )
    )
    text = (doc.text or "").strip() if doc is not None else ""
    if doc is None or not text:
        raise FetchError(shown_url(url), "no article text in the page")
    title = _clean(doc.title)
    first, _, rest = text.partition("\n")
    if title and _clean(first) == title and rest.strip():
        text = rest.strip()  # trafilatura keeps the <h1>; the title is carried apart
    return PageText(
        url=url,
        title=title,
        text=text,
        author=_clean(doc.author),
        published=_clean(doc.date),
        site=_clean(doc.sitename),
    )


def page_metadata(html: bytes | str, url: str) -> dict[str, str | None]:
    """Read a page's metadata only (no text extraction: a few milliseconds).

    Args:
        html: the page, as bytes or text.
        url: the page's URL; nothing is fetched.

    Returns:
        ``{"title", "author", "published", "site"}``, each a string or None;
        ``published`` is ISO 8601 (``YYYY-MM-DD``).
    """
    tree = trafilatura.load_html(html) if html else None  # detects the encoding of bytes
    doc = (
        trafilatura.extract_metadata(tree, default_url=url, date_config=_date_params())
        if tree is not None
        else None
    )
    if doc is None:
        return {"title": None, "author": None, "published": None, "site": None}
    return {
        "title": _clean(doc.title),
        "author": _clean(doc.author),
        "published": _clean(doc.date),
        "site": _clean(doc.sitename),
    }
