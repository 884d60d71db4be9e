"""The news analysis chain, its tools, the agent loop and the news run, on fake models and MockTransport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from lc_async_pipelines.errors import ConfigurationError, InputError, OutputValidationError
from lc_async_pipelines.news import (
    Fetcher,
    FetchLimits,
    NewsAnalysis,
    NewsReport,
    analyse_news,
    build_news_agent,
    build_news_analysis_chain,
    build_news_tool_chain,
    news_tools,
    read_sources,
)
from lc_async_pipelines.news._analysis import JSON_MAX_TOKENS, cut_to_words
from lc_async_pipelines.prompts.news import NEWS_TONE_PROMPT
from lc_async_pipelines.runner import RetryPolicy, RunOptions, run_items
from lc_async_pipelines.runner.inputs import Item
from tests.unit.fakes import FnChatModel, fake_llm


def analysis_json(**over: Any) -> str:
    value = {
        "summary": "The city council approved a new budget that gives the schools more money.",
        "topic": "education",
        "tone": "neutral",
        "key_facts": ["A budget passed.", "Schools get more.", "The vote was 5 to 2."],
        "people": ["Ann Lee", "ann lee", " Bo  Chan "],
        "organizations": ["City Council"],
        "places": ["Leeds"],
    }
    value.update(over)
    return json.dumps(value)


def without_tone(reply: str) -> str:
    try:
        value = json.loads(reply)
    except json.JSONDecodeError:
        return reply
    value.pop("tone", None)
    return json.dumps(value)


def news_llm(
    *analyses: str, tones: list[str] | None = None, seen: list[list[Any]] | None = None
) -> FnChatModel:
    """A fake for the analysis chain: tone questions get ``tones`` in turn (else neutral),
    every other call the next of ``analyses`` (the last one again when they run out), each
    without its tone (the analysis call does not fill it). Every request's messages go to ``seen``."""
    queue, tone_queue = [without_tone(a) for a in analyses], list(tones or [])

    async def answer(messages: list[Any], **kwargs: Any) -> AIMessage:
        if seen is not None:
            seen.append(list(messages))
        if messages[0].content == NEWS_TONE_PROMPT.messages[0].prompt.template:
            tone = tone_queue.pop(0) if tone_queue else "neutral"
            return AIMessage(content=json.dumps({"tone": tone}))
        return AIMessage(content=queue.pop(0) if len(queue) > 1 else queue[0])

    return FnChatModel(fn=answer)


class ToolModel(BaseChatModel):
    """A tool-calling fake: replies come from a list; every request's messages are kept."""

    replies: list[AIMessage]
    seen: list[list[Any]]
    bound: list[str]

    @property
    def _llm_type(self) -> str:
        return "tool-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        self.bound.extend(t.name for t in tools)
        return self

    def with_structured_output(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError  # answers as JSON text, parsed by structured_output

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.seen.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self.replies.pop(0))])


PAGE = """<html><head><title>Council passes school budget</title>
<meta name="author" content="Jo Reporter">
<meta property="article:published_time" content="2024-03-05T10:00:00Z">
<meta property="og:site_name" content="Local News">
</head><body><article><h1>Council passes school budget</h1>
<p>The city council approved a new budget for the schools of Leeds on Tuesday evening,
after a long debate that ran past midnight and drew a large crowd of parents.</p>
<p>Council leader Ann Lee said the vote, five to two, would give every school more money
for teachers and books next year, and that the plan had been a year in the making.</p>
<p>Opponents said the council should have cut other costs first, and promised to raise the
matter again when the next budget is drawn up in the spring.</p>
</article></body></html>"""

FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title>
<link>http://news.test/</link><description>d</description>
{items}</channel></rss>"""


def rss(*paths: str) -> str:
    items = "".join(
        f"<item><title>{p}</title><link>http://news.test{p}</link></item>" for p in paths
    )
    return FEED.format(items=items)


class Site:
    """A MockTransport site: feeds and pages by path; counts requests per path."""

    def __init__(self, routes: dict[str, tuple[int, str, str]]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        self.hang = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/hang":
            await self.hang.wait()
        status, kind, body = self.routes.get(path, (404, "text/plain", "not found"))
        return httpx.Response(status, headers={"content-type": kind}, text=body)

    def fetcher(self, **limits: Any) -> Fetcher:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return Fetcher(FetchLimits(**limits), client=client)


def page_site() -> Site:
    return Site({"/a": (200, "text/html", PAGE)})


async def test_analysis_chain_parses_cleans_and_cuts_the_summary():
    long = " ".join(["This sentence has five words."] * 20)
    chain = build_news_analysis_chain(news_llm(analysis_json(summary=long)), max_words=20)
    result = await chain.ainvoke("Council passes school budget\n\nThe council ...")
    assert isinstance(result, NewsAnalysis)
    assert result.people == ["Ann Lee", "Bo Chan"]  # repeats and spaces dropped
    assert len(result.summary.split()) <= 26 and result.summary.endswith(".")
    assert chain.get_input_jsonschema()["type"] == "string"


async def test_a_bad_analysis_is_an_output_validation_error_and_the_runner_retries_it():
    bad = analysis_json(key_facts=["only one"])
    chain = build_news_analysis_chain(news_llm("{not json", bad, analysis_json()))
    with pytest.raises(OutputValidationError):
        await chain.ainvoke("text")
    options = RunOptions(retry=RetryPolicy(max_retries=2, initial=0, max_wait=0, jitter=0))
    records = [r async for r in run_items(chain, [Item("a", 1, "text")], options)]
    assert records[0].ok and records[0].attempts == 2


def test_every_string_and_list_of_the_schema_is_bounded():
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                assert "maxLength" in node, node
            if node.get("type") == "array":
                assert "maxItems" in node, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    schema = NewsAnalysis.model_json_schema()
    walk(schema)
    assert schema["additionalProperties"] is False
    longest = 1500 + 40 + 3 * 200 + 3 * 6 * 60
    assert longest / 3 < JSON_MAX_TOKENS


def test_cut_to_words_keeps_short_text_and_cuts_at_a_sentence_end():
    assert cut_to_words("One two three.", 10) == "One two three."
    text = "A b c d e. F g h i j. K l m n o p q r s t."
    assert cut_to_words(text, 8) == "A b c d e. F g h i j."
    assert len(cut_to_words("w " * 100, 10).split()) == 13


def test_the_chain_refuses_a_nonsense_length():
    with pytest.raises(ConfigurationError, match="max_words"):
        build_news_analysis_chain(fake_llm([]), max_words=0)


async def test_both_tools_share_one_download_and_return_text_and_metadata():
    site = page_site()
    async with site.fetcher() as fetcher:
        fetch_article, article_metadata = news_tools(fetcher)
        calls = [
            {
                "name": t.name,
                "args": {"url": "http://news.test/a"},
                "id": str(i),
                "type": "tool_call",
            }
            for i, t in enumerate((fetch_article, article_metadata))
        ]
        text, meta = await asyncio.gather(
            fetch_article.ainvoke(calls[0]), article_metadata.ainvoke(calls[1])
        )
    assert isinstance(text, ToolMessage) and "approved a new budget" in str(text.content)
    assert str(text.content).startswith("Council passes school budget")
    assert meta.artifact["author"] == "Jo Reporter"
    assert meta.artifact["published"].startswith("2024-03-05")
    assert site.hits == {"/a": 1}


async def test_the_fixed_tool_chain_builds_a_report_from_tools_and_analysis():
    site = page_site()
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        report = await chain.ainvoke("http://news.test/a")
    assert isinstance(report, NewsReport)
    assert report.author == "Jo Reporter" and report.title == "Council passes school budget"
    assert report.analysis.topic == "education"


async def test_a_page_that_fails_is_a_fetch_error_naming_the_url():
    site = Site({})
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        records = [r async for r in run_items(chain, [Item("x", 1, "http://news.test/gone")])]
    assert records[0].error["type"] == "FetchError"
    assert "http://news.test/gone" in records[0].error["message"]
    assert "404" in records[0].error["message"]
    assert records[0].attempts == 1  # a 404 is not retried


async def test_the_agent_runs_the_tools_the_model_calls_and_feeds_back_their_results():
    site = page_site()
    url = "http://news.test/a"
    model = ToolModel(
        replies=[
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "fetch_article", "args": {"url": url}, "id": "c1"},
                    {"name": "article_metadata", "args": {"url": url}, "id": "c2"},
                ],
            ),
            AIMessage(content="I have read it."),
            AIMessage(content=analysis_json(tone="positive")),
        ],
        seen=[],
        bound=[],
    )
    async with site.fetcher() as fetcher:
        agent = build_news_agent(model, news_tools(fetcher))
        report = await agent.ainvoke(url)
    assert model.bound == ["fetch_article", "article_metadata"]
    assert report.analysis.tone == "positive" and report.author == "Jo Reporter"
    second = model.seen[1]  # the model's second turn saw both tool results
    results = [m for m in second if isinstance(m, ToolMessage)]
    assert {m.tool_call_id for m in results} == {"c1", "c2"}
    assert "approved a new budget" in str(results[0].content)
    assert site.hits == {"/a": 1}


async def test_an_agent_that_never_reads_the_article_gets_it_read_for_it():
    site = page_site()
    model = ToolModel(
        replies=[AIMessage(content="No need."), AIMessage(content=analysis_json())],
        seen=[],
        bound=[],
    )
    async with site.fetcher() as fetcher:
        report = await build_news_agent(model, news_tools(fetcher)).ainvoke("http://news.test/a")
    assert report.title == "Council passes school budget"
    assert any(isinstance(m, ToolMessage) for m in model.seen[-1])


async def test_an_agent_calling_an_unknown_tool_fails_the_article():
    model = ToolModel(
        replies=[AIMessage(content="", tool_calls=[{"name": "weather", "args": {}, "id": "w"}])],
        seen=[],
        bound=[],
    )
    async with page_site().fetcher() as fetcher:
        agent = build_news_agent(model, news_tools(fetcher))
        with pytest.raises(OutputValidationError, match="weather"):
            await agent.ainvoke("http://news.test/a")


def test_a_model_without_tools_cannot_be_an_agent():
    fetcher = Fetcher(FetchLimits())
    with pytest.raises(ConfigurationError, match="cannot call tools"):
        build_news_agent(fake_llm([]), news_tools(fetcher))


async def test_the_news_run_gives_one_record_per_article_and_per_failed_source():
    site = Site(
        {
            "/world.rss": (200, "application/rss+xml", rss("/a", "/b", "/missing")),
            "/more.rss": (200, "application/rss+xml", rss("/b?utm_source=x", "/c")),
            "/broken.rss": (200, "application/rss+xml", "this is not xml at all"),
            "/a": (200, "text/html", PAGE),
            "/b": (200, "text/html", PAGE.replace("Leeds", "York")),
            "/c": (200, "text/html", PAGE.replace("Leeds", "Hull")),
        }
    )
    sources = [
        f"http://news.test/{name}" for name in ("world.rss", "more.rss", "broken.rss", "gone.rss")
    ]
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        records = [r async for r in analyse_news(sources, chain, fetcher)]
    by_input = {r.input: r for r in records}
    assert len(records) == len(by_input) == 6  # 2 failed sources, 4 distinct articles
    assert by_input["http://news.test/gone.rss"].error["type"] == "FetchError"
    assert "404" in by_input["http://news.test/gone.rss"].error["message"]
    assert by_input["http://news.test/broken.rss"].error["type"] == "FetchError"
    assert by_input["http://news.test/missing"].error["type"] == "FetchError"
    assert sum(r.ok for r in records) == 3
    assert site.hits["/b"] == 1  # listed by two feeds, fetched and analysed once


async def test_the_deadline_turns_unfinished_articles_into_records():
    site = Site(
        {
            "/f.rss": (200, "application/rss+xml", rss("/a", "/hang")),
            "/a": (200, "text/html", PAGE),
        }
    )
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        records = [
            r async for r in analyse_news(["http://news.test/f.rss"], chain, fetcher, deadline_s=1)
        ]
    site.hang.set()
    errors = {r.input: r.error for r in records if not r.ok}
    assert len(records) == 2
    assert errors["http://news.test/hang"]["type"] == "DeadlineExceeded"


def test_read_sources_takes_comments_and_names_a_bad_line(tmp_path):
    good = tmp_path / "feeds.txt"
    good.write_text(
        "# feeds\nhttp://a.test/rss  # world\n\nhttps://b.test/atom\nhttp://a.test/rss\n"
    )
    assert read_sources(good) == ["http://a.test/rss", "https://b.test/atom"]
    bad = tmp_path / "bad.txt"
    bad.write_text("http://a.test/rss\nftp://files.test/x\n")
    with pytest.raises(InputError, match="line 2"):
        read_sources(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="no feed URL"):
        read_sources(empty)
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="UTF-8"):
        read_sources(binary)


async def test_the_agent_s_model_calls_draw_from_the_run_s_budget():
    from lc_async_pipelines.runner import RateBudget, with_budget

    url = "http://news.test/a"
    model = ToolModel(
        replies=[
            AIMessage(
                content="", tool_calls=[{"name": "fetch_article", "args": {"url": url}, "id": "c1"}]
            ),
            AIMessage(content="Read."),
            AIMessage(content=analysis_json()),
        ],
        seen=[],
        bound=[],
    )
    budget = RateBudget(rpm=6000)
    async with page_site().fetcher() as fetcher:
        agent = build_news_agent(with_budget(model, budget), news_tools(fetcher))
        report = await agent.ainvoke(url)
    assert report.analysis.topic == "education"
    assert budget.requests_sent == 3  # two turns of the loop and the analysis


async def test_the_agent_fetches_only_the_article_s_url():
    site = Site({"/a": (200, "text/html", PAGE), "/admin": (200, "text/html", PAGE)})
    url = "http://news.test/a"
    model = ToolModel(
        replies=[
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "fetch_article", "args": {"url": url}, "id": "ok"},
                    {
                        "name": "article_metadata",
                        "args": {"url": "http://news.test/admin"},
                        "id": "x",
                    },
                ],
            ),
            AIMessage(content="Done."),
            AIMessage(content=analysis_json()),
        ],
        seen=[],
        bound=[],
    )
    async with site.fetcher() as fetcher:
        report = await build_news_agent(model, news_tools(fetcher)).ainvoke(url)
    assert "/admin" not in site.hits
    refused = [m for m in model.seen[1] if isinstance(m, ToolMessage) and m.tool_call_id == "x"]
    assert refused and refused[0].status == "error"
    assert report.url == url


async def test_article_links_lose_their_credentials_and_stop_ends_the_feed_wait():
    site = Site(
        {
            "/f.rss": (
                200,
                "application/rss+xml",
                FEED.format(
                    items="<item><title>a</title><link>http://user:hunter2@news.test/a</link></item>"
                ),
            ),
            "/a": (200, "text/html", PAGE),
        }
    )
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        records = [r async for r in analyse_news(["http://news.test/f.rss"], chain, fetcher)]
        assert [r.input for r in records] == ["http://news.test/a"]
        assert "hunter2" not in json.dumps([r.to_dict() for r in records])
        stop = asyncio.Event()
        stop.set()
        site.routes["/g.rss"] = site.routes["/f.rss"]
        stopped = [
            r
            async for r in analyse_news(
                ["http://news.test/hang"], chain, fetcher, RunOptions(stop=stop)
            )
        ]
        site.hang.set()
    assert stopped == []  # a feed not read when stopped has no record: a run again reads it
    assert [r async for r in analyse_news([], chain, fetcher)] == []


def test_read_sources_hides_credentials_and_refuses_odd_urls(tmp_path):
    for text in ("ftp://secrettoken@host/feed\n", "http://[invalid/feed\n", "http://h:99999/x\n"):
        path = tmp_path / "s.txt"
        path.write_text(text)
        with pytest.raises(InputError, match="line 1") as info:
            read_sources(path)
        assert "secrettoken" not in str(info.value)


async def test_repeated_key_facts_stay_three_so_a_record_validates_again():
    chain = build_news_analysis_chain(news_llm(analysis_json(key_facts=["Pep", "pep", "Santo"])))
    result = await chain.ainvoke("text")
    assert NewsAnalysis.model_validate(result.model_dump()).key_facts == ["Pep", "pep", "Santo"]


ARTICLE = "Council passes school budget\n\n" + " ".join(["The council met again."] * 300)


async def test_the_tone_is_a_call_of_its_own_on_the_whole_article():
    seen: list[list[Any]] = []
    llm = news_llm(analysis_json(), tones=["negative"], seen=seen)
    result = await build_news_analysis_chain(llm).ainvoke(ARTICLE)
    assert result.tone == "negative"
    tone_calls = [m for m in seen if m[0].content.startswith("You judge the tone")]
    assert len(tone_calls) == 1 and len(seen) == 2
    assert ARTICLE in tone_calls[0][-1].content  # the whole article, not the summary
    analysis_call = next(m for m in seen if m not in tone_calls)
    assert "tone" not in analysis_call[-1].content  # the analysis does not pick it


async def test_each_article_gets_the_tone_its_own_call_chose():
    llm = news_llm(analysis_json(), tones=["negative", "positive"])
    chain = build_news_analysis_chain(llm).with_config(max_concurrency=1)
    results = await chain.abatch(["A sad article.", "A happy article."])
    assert {r.tone for r in results} == {"negative", "positive"}


async def test_a_tone_that_is_not_one_of_the_three_is_an_output_validation_error():
    llm = news_llm(analysis_json(), tones=["angry"])
    with pytest.raises(OutputValidationError):
        await build_news_tool_chain(llm, [_text_tool()]).ainvoke("http://news.test/a")


def _text_tool() -> Any:
    from langchain_core.tools import tool

    @tool("fetch_article", response_format="content_and_artifact")
    async def fetch_article(url: str) -> tuple[str, None]:
        """Return a fixed article."""
        return ARTICLE, None

    return fetch_article


def test_the_schemas_ask_for_a_summary_of_at_least_45_characters():
    from lc_async_pipelines.news._analysis import ArticleFacts

    for model in (ArticleFacts, NewsAnalysis):
        summary = model.model_json_schema()["properties"]["summary"]
        assert summary["minLength"] == 45 and summary["maxLength"] == 1500
    assert "tone" not in ArticleFacts.model_json_schema()["properties"]


def test_a_news_analysis_with_a_summary_under_ten_words_does_not_validate():
    value = json.loads(analysis_json(summary="[A]ubermint makes mint and sells it."))
    with pytest.raises(ValueError, match="has 6 words; at least 10"):
        NewsAnalysis.model_validate(value)


async def test_a_short_summary_is_asked_again_with_the_reply_shown():
    seen: list[list[Any]] = []
    short = analysis_json(summary="<Summary of the article>")
    llm = news_llm(short, analysis_json(), seen=seen)
    result = await build_news_analysis_chain(llm).ainvoke(ARTICLE)
    assert result.summary == json.loads(analysis_json())["summary"]
    asks = [m for m in seen if not m[0].content.startswith("You judge the tone")]
    assert len(asks) == 2
    again = asks[1]
    assert again[:2] == asks[0]  # the same request, then the short reply and why
    assert "<Summary of the article>" in again[2].content and again[2].type == "ai"
    assert "has 4 words" in again[3].content and "at least 10 words" in again[3].content


async def test_a_summary_still_short_after_three_asks_is_an_output_validation_error():
    seen: list[list[Any]] = []
    llm = news_llm(analysis_json(summary="Aubermint."), seen=seen)
    chain = build_news_analysis_chain(llm)
    with pytest.raises(OutputValidationError, match="1 words after 3 asks"):
        await chain.ainvoke("text")
    assert len([m for m in seen if not m[0].content.startswith("You judge")]) == 3
    options = RunOptions(retry=RetryPolicy(max_retries=1, initial=0, max_wait=0, jitter=0))
    records = [r async for r in run_items(chain, [Item("a", 1, "text")], options)]
    assert records[0].error["type"] == "OutputValidationError"


def test_the_cut_never_leaves_fewer_than_the_least_words():
    text = "Mint sold. " + "The factory opens in the north next spring with new jobs " * 3
    cut = cut_to_words(text, 10, min_words=10)
    assert len(cut.split()) >= 10
    assert cut_to_words(text, 10) == "Mint sold."


async def test_the_chain_refuses_a_length_under_the_least_summary():
    with pytest.raises(ConfigurationError, match="from 10 to 2000"):
        build_news_analysis_chain(news_llm(analysis_json()), max_words=9)


async def test_a_page_that_states_no_date_gets_no_date_in_its_report():
    undated = PAGE.replace(
        '<meta property="article:published_time" content="2024-03-05T10:00:00Z">', ""
    ).replace("on Tuesday evening", "on Tuesday evening, as it has every year since 1997")
    site = Site({"/a": (200, "text/html", undated)})
    async with site.fetcher() as fetcher:
        chain = build_news_tool_chain(news_llm(analysis_json()), news_tools(fetcher))
        report = await chain.ainvoke("http://news.test/a")
    assert report.published is None
    assert report.author == "Jo Reporter"  # the rest of the metadata is still read
