"""iter_articles against the local news server: 50 real articles, one error per broken case."""

import time
from urllib.parse import urlsplit

import httpx

from benchmarks.news_server import (
    AUTHORS,
    BROKEN_CASES,
    LOCAL_FEED,
    SITE,
    load_stories,
    spawn,
    write_sources,
)
from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news._feeds import Article, iter_articles
from lc_async_pipelines.news._fetch import Fetcher, FetchLimits, canonical_url

N = 50


async def test_feeds_of_real_articles_with_every_broken_case(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINES_DATA_DIR", str(data_dir))  # the server reads the same data
    stories = {s.id: s for s in load_stories(N, data_dir)}
    # /slow answers after 30 s; the fetcher gives up after 2 s between reads
    with spawn("--articles", str(N), "--slow-s", "30", log=tmp_path / "server.log") as base:
        path = write_sources(base, tmp_path / "sources.txt")
        sources = [
            line for line in path.read_text().splitlines() if line and not line.startswith("#")
        ]
        started = time.perf_counter()
        async with Fetcher(FetchLimits(read_timeout_s=2)) as fetcher:
            out = [x async for x in iter_articles(sources, fetcher)]
        wall = time.perf_counter() - started
    print(f"iter_articles: {len(out)} results from {len(sources)} sources in {wall:.2f} s")

    articles = [x for x in out if isinstance(x, Article)]
    errors = [x for x in out if isinstance(x, FetchError)]
    assert len(out) == N + len(BROKEN_CASES)

    assert len(articles) == N
    assert len({canonical_url(a.url) for a in articles}) == N  # each once, from 1-2 feeds
    for article in articles:
        story = stories[urlsplit(article.url).path.removeprefix("/articles/").removesuffix(".html")]
        assert article.title == story.title
        text = " ".join(article.text.split())  # trafilatura turns no-break spaces into spaces
        assert " ".join(story.paragraphs[-1].split()) in text  # the real article, extracted
        assert article.author == story.author and article.author in AUTHORS
        assert article.published == story.published.isoformat()
        assert article.site == SITE
        assert article.source.startswith(base + "/feeds/")
    assert set(stories) == {
        urlsplit(a.url).path.removeprefix("/articles/").removesuffix(".html") for a in articles
    }

    causes = {urlsplit(e.url).path: e.cause for e in errors}
    assert len(errors) == len(causes) == len(BROKEN_CASES)
    assert set(causes) == set(BROKEN_CASES)
    for path, expected in BROKEN_CASES.items():
        assert causes[path].startswith(expected), (path, causes[path])
    assert causes["/slow"] == "timed out after 2 s"
    assert causes["/big"] == "larger than 5000000 bytes"
    assert causes["/file.bin"] == "not HTML (application/octet-stream)"


async def test_a_feed_s_links_to_this_machine_under_another_name_are_refused(
    data_dir, tmp_path, monkeypatch
):
    """SSRF: the user named 127.0.0.1; the feed's links reach the same server as localhost."""
    monkeypatch.setenv("PIPELINES_DATA_DIR", str(data_dir))
    first, second = load_stories(2, data_dir)
    with spawn("--articles", "2", log=tmp_path / "server.log") as base:
        async with Fetcher() as fetcher:
            out = [x async for x in iter_articles([base + LOCAL_FEED], fetcher)]
        async with httpx.AsyncClient(trust_env=False) as client:
            hits = (await client.get(base + "/stats")).json()
        async with Fetcher(FetchLimits(allow_private_addresses=True)) as fetcher:
            allowed = [x async for x in iter_articles([base + LOCAL_FEED], fetcher)]

        async def says_public(host: str, port: int) -> list[str]:
            return ["93.184.216.34"]  # DNS rebinding: checked public, connected private

        rebound: FetchError | None = None
        async with Fetcher(resolve=says_public) as fetcher:
            try:
                await fetcher.get(f"http://localhost:{urlsplit(base).port}{first.path}",
                                  expect="html")  # fmt: skip
            except FetchError as exc:
                rebound = exc
    assert len(out) == 2 and all(isinstance(x, FetchError) for x in out), out
    for error in out:
        assert error.cause.startswith("refused: a loopback address"), error.cause
    assert hits.get(first.path, 0) == 0  # refused before it was sent
    assert hits.get("/to-local", 0) == 1  # the user's host answered; its redirect was refused
    assert hits.get(second.path, 0) == 0
    assert sorted(a.title for a in allowed if isinstance(a, Article)) == sorted(
        [first.title, second.title]
    )
    assert isinstance(rebound, FetchError), rebound
    assert rebound.cause.startswith("refused: a loopback address"), rebound.cause
