"""The page in a real headless browser (Debian's chromium driven by Playwright) on the embedded model."""

import json
import os
import re
from pathlib import Path

import httpx

from lc_async_pipelines._text import distinct_ngram_ratio
from lc_async_pipelines.models import ModelSettings, make_chat_model
from lc_async_pipelines.prompt_chain import build_prompt_chain
from lc_async_pipelines.registry import PipelineSpec, registered_pipelines
from lc_async_pipelines.service import ServiceSettings, create_app
from tests.integration._browser import needs_chromium, watch
from tests.integration._live import serve

pytestmark = needs_chromium

SCREENSHOT = Path(__file__).resolve().parents[2] / "examples" / "web_page.png"
NEWS = (
    "The city council voted on Tuesday to build a new bridge across the river. The bridge will "
    "cost 40 million dollars and is planned to open in 2028. Critics said the money should go "
    "to schools instead, and a petition against the plan has 3,000 signatures."
)


def _llm(base_url: str):
    # A client of its own: langchain-openai caches one async httpx client per base
    # URL for the process, and each test's server runs on its own event loop; a
    # connection pooled on the last test's (closed) loop would fail this one.
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
    return make_chat_model(ModelSettings(), base_url=base_url, http_async_client=client)


def _app(base_url: str, **settings):
    llm = _llm(base_url)
    return create_app(llm, settings=ServiceSettings(max_in_flight=4, **settings))


async def _start_run(page, pipeline: str, text: str, max_words: str = "") -> None:
    await page.select_option("#pipeline", pipeline)
    await page.fill("#input", text)
    await page.fill("#max-words", max_words)
    await page.click("#run")


async def test_page_streams_two_runs_at_once_and_shows_their_figures(browser, embedded_server):
    with serve(_app(embedded_server.base_url, api_token="tok-typed-in-0123456")) as base:
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        seen = watch(page, base)
        response = await page.goto(base + "/")
        assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
        # A token typed in stays in the page's memory: no web storage holds it.
        await page.fill("#token", "tok-typed-in-0123456")
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector("#pipeline option", state="attached")
        stored = await page.evaluate(
            "() => JSON.stringify([{...localStorage}, {...sessionStorage}])"
        )
        assert "tok-typed-in-0123456" not in stored
        # Streamed text is on the page while the run is still streaming. An observer
        # notes it the moment it happens, so a slow first token on a loaded machine
        # (or a run that ends between two polls) cannot make the check miss it.
        await page.evaluate(
            """() => { window.sawStreaming = false;
                new MutationObserver(() => {
                  const c = document.querySelector('.run');
                  if (c && c.dataset.state === 'streaming'
                      && c.querySelector('.output').textContent.trim().length > 0) {
                    window.sawStreaming = true; }
                }).observe(document.body, {subtree: true, childList: true,
                                           characterData: true, attributes: true}); }"""
        )
        await _start_run(page, "story", "a lighthouse keeper who collects storms", "120")
        await page.wait_for_function("() => window.sawStreaming", timeout=180_000)
        await _start_run(page, "summary", NEWS)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.run')]"
            ".every(c => c.dataset.state !== 'streaming')",
            timeout=180_000,
        )
        cards = page.locator(".run")
        assert await cards.count() == 2
        for i in range(2):
            card = cards.nth(i)
            assert await card.get_attribute("data-state") == "done"
            assert int(await card.get_attribute("data-tokens")) > 5
            figures = await card.locator(".figures").inner_text()
            match = re.search(
                r"latency ([\d.]+) s · time to first token ([\d.]+) s · tokens (\d+) in / (\d+) out",
                figures,
            )
            assert match, figures
            latency, ttft, tokens_in, tokens_out = match.groups()
            assert float(ttft) <= float(latency)
            assert int(tokens_in) > 0 and int(tokens_out) > 0
            text = await card.locator(".output").inner_text()
            assert len(text.split()) >= 15
            assert distinct_ngram_ratio(text, 3) > 0.6
        path = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else None
        if path is not None:
            await page.screenshot(path=str(path), full_page=True)
    # The page works under its CSP (inline code allowed by hash) and loads nothing from outside.
    assert seen["outside"] == []
    assert seen["violations"] == []


def build_letter_chain(llm):
    """A letter to someone about a topic: a prompt with two variables (an object input)."""
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_template(
        "Write a short, friendly letter to {name} about {topic}. Use at most 60 words."
    )
    return build_prompt_chain(llm.bind(max_tokens=120), prompt)


async def test_page_runs_an_object_input_pipeline(browser, embedded_server):
    llm = _llm(embedded_server.base_url)
    letter = PipelineSpec("letter", build_letter_chain, "A letter.", input_label="row")
    app = create_app(
        llm, settings=ServiceSettings(), pipelines={**registered_pipelines(), "letter": letter}
    )
    with serve(app) as base:
        page = await browser.new_page()
        await page.goto(base + "/")
        await page.wait_for_selector("#pipeline option[value='letter']", state="attached")
        assert await page.locator("#pipeline option").count() == 4  # story, summary, news, letter
        await page.select_option("#pipeline", "letter")
        # An object input: the box is a JSON skeleton of the prompt's variables, max words is off.
        assert await page.is_checked("#as-json")
        assert await page.is_disabled("#max-words")
        assert "name" in await page.input_value("#input")
        await page.fill("#input", "[1, 2]")
        await page.click("#run")
        assert "must be a JSON object" in await page.locator("#form-error").inner_text()
        await page.fill("#input", '{"name": "Ada", "topic": "the new garden"}')
        await page.click("#run")
        await page.wait_for_selector(".run[data-state='done']", timeout=120_000)
        text = await page.locator(".run .output").inner_text()
        title = await page.locator(".run .title").inner_text()
        # Back to a text pipeline: a plain text box again.
        await page.select_option("#pipeline", "story")
        assert not await page.is_checked("#as-json")
        assert await page.input_value("#input") == '{"name": "Ada", "topic": "the new garden"}'
    assert title.startswith('letter: {"name":"Ada"')
    assert len(text.split()) >= 5


def build_facts_chain(llm):
    """A structured output with no model call: what the news pipeline's JSON looks like."""
    from langchain_core.runnables import RunnableLambda

    return RunnableLambda(lambda text: {"topic": text.upper(), "key_facts": ["one", "two"]})


async def test_page_shows_a_structured_output_as_json_and_keeps_the_choice_on_reload(browser):
    from tests.unit.fakes import cycling_llm

    facts = PipelineSpec("facts", build_facts_chain, "Facts (JSON).")
    app = create_app(cycling_llm("unused"), settings=ServiceSettings(api_token="tok-facts-0123456789"),
                     pipelines={**registered_pipelines(), "facts": facts})  # fmt: skip
    with serve(app) as base:
        page = await browser.new_page()
        await page.goto(base + "/")
        await page.fill("#token", "tok-facts-0123456789")
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector("#pipeline option[value='facts']", state="attached")
        await page.select_option("#pipeline", "facts")
        # A token entered again reloads the list (as CI once raced a run against):
        # the choice stays.
        await page.dispatch_event("#token", "change")
        await page.wait_for_load_state("networkidle")
        assert await page.input_value("#pipeline") == "facts"
        await page.fill("#input", "bridge vote")
        await page.click("#run")
        await page.wait_for_selector(".run[data-state='done']", timeout=60_000)
        text = await page.locator(".run .output").inner_text()
    assert json.loads(text) == {"topic": "BRIDGE VOTE", "key_facts": ["one", "two"]}


async def test_page_opens_on_the_first_builtin_with_its_placeholder_and_no_token_field(browser):
    from tests.unit.fakes import cycling_llm

    specs = registered_pipelines()
    with serve(create_app(cycling_llm("Once."), settings=ServiceSettings())) as base:
        page = await browser.new_page()
        seen = watch(page, base)
        await page.goto(base + "/")
        await page.wait_for_selector("#pipeline option", state="attached")
        assert await page.input_value("#pipeline") == "story"
        assert await page.get_attribute("#input", "placeholder") == specs["story"].example
        # no token configured: the field is not shown
        assert not await page.is_visible("#token")
        for name in ("summary", "news"):
            await page.select_option("#pipeline", name)
            assert await page.get_attribute("#input", "placeholder") == specs[name].example
    assert seen["violations"] == []


async def test_page_shows_the_token_field_when_the_service_needs_one(browser):
    from tests.unit.fakes import cycling_llm

    settings = ServiceSettings(api_token="tok-page-0123456789")
    with serve(create_app(cycling_llm("Once."), settings=settings)) as base:
        page = await browser.new_page()
        seen = watch(page, base)
        await page.goto(base + "/")
        await page.wait_for_selector("#token", state="visible")
        # the list needs the token: the page asks for it rather than fetch a 401
        await page.wait_for_selector("text=enter the bearer token")
        assert await page.locator("#pipeline option").count() == 0
        await page.fill("#token", "tok-page-0123456789")
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector("#pipeline option", state="attached")
        assert await page.input_value("#pipeline") == "story"
        assert await page.is_visible("#token")
    assert seen["violations"] == []  # no 401 in the console either


async def test_page_shows_the_model_error(browser, tmp_path):
    # Nothing listens on the discard port: the model call fails to connect.
    dead = create_app(
        make_chat_model(ModelSettings(), base_url="http://127.0.0.1:9/v1", timeout=5),
        settings=ServiceSettings(),
    )
    with serve(dead) as base:
        page = await browser.new_page()
        await page.goto(base + "/")
        await page.wait_for_selector("#pipeline option", state="attached")
        await _start_run(page, "story", "a fox")
        await page.wait_for_selector(".run[data-state='error']", timeout=60_000)
        message = await page.locator(".run .error").inner_text()
    # The error's class and request id reach the page; its text only the service's log.
    assert re.fullmatch(
        r"the model call failed: \w*ConnectionError: "
        r"the details are in the service log under request [0-9a-f]{12}",
        message,
    ), message


async def test_the_docs_page_works_offline(browser):
    dead = create_app(
        make_chat_model(ModelSettings(), base_url="http://127.0.0.1:9/v1", timeout=5),
        settings=ServiceSettings(),
    )
    with serve(dead) as base:
        page = await browser.new_page()
        seen = watch(page, base)
        await page.goto(base + "/")
        await page.click("text=API reference")
        await page.wait_for_selector("h1")
        assert page.url == base + "/docs"
        assert "POST /v1/pipelines/{name}/stream" in await page.locator("body").inner_text()
        # The page's own style applies: allowed by its hash.
        width = await page.evaluate("getComputedStyle(document.body).maxWidth")
        await page.click("text=openapi.json")
        await page.wait_for_load_state()
        assert "/v1/pipelines/{name}/invoke" in await page.locator("body").inner_text()
    assert width == "960px"  # 60rem
    assert seen["outside"] == []
    assert seen["violations"] == []


async def test_page_sends_the_summary_kind_and_shows_the_kind_used(browser):
    from tests.unit.fakes import FnChatModel

    asked = []

    async def model(messages, **_):
        from langchain_core.messages import AIMessage

        asked.append(messages[-1].content)
        return AIMessage(content="Amanda bakes cookies for Jerry and brings them.")

    dialogue = "Amanda: I baked cookies.\nJerry: Sure!\nAmanda: I'll bring you some."
    with serve(create_app(FnChatModel(fn=model), settings=ServiceSettings())) as base:
        page = await browser.new_page()
        seen = watch(page, base)
        await page.goto(base + "/")
        await page.wait_for_selector("#pipeline option", state="attached")
        assert await page.is_disabled("#kind")  # the story takes no kind
        await page.select_option("#pipeline", "summary")
        assert not await page.is_disabled("#kind")
        assert await page.input_value("#kind") == "auto"
        await page.fill("#input", dialogue)
        await page.fill("#max-words", "10")  # the fake's 8 words are in range: one call a run
        await page.click("#run")
        await page.wait_for_selector(".run[data-state='done']", timeout=60_000)
        await page.select_option("#kind", "meeting")
        await page.click("#run")
        await page.wait_for_function(
            "() => document.querySelectorAll(\".run[data-state='done']\").length === 2",
            timeout=60_000,
        )
        figures = await page.locator(".run .figures").all_inner_texts()
        await page.select_option("#pipeline", "story")
        assert await page.is_disabled("#kind") and await page.input_value("#kind") == "auto"
    assert "kind meeting" in figures[0] and "guessed" not in figures[0]  # newest first
    assert "kind dialogue (guessed)" in figures[1]
    assert "conversation" in asked[0] and "meeting transcript" in asked[1]
    assert seen["violations"] == []
