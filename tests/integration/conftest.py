"""Integration tests: real servers (embedded model, mocks, Redis, Ray, a browser) started by the tests."""

from pathlib import Path

import pytest

from lc_async_pipelines.embedded import EmbeddedModelServer
from lc_async_pipelines.models import ModelSettings, make_chat_model


@pytest.fixture(scope="session")
def embedded_server():
    # build=True: a fresh machine builds llama-server here if `make` did not.
    with EmbeddedModelServer(parallel=4) as server:
        yield server


@pytest.fixture
async def browser():
    """Debian's chromium, through Playwright (tests/integration/_browser.py)."""
    from playwright.async_api import async_playwright

    from tests.integration._browser import ARGS, CHROMIUM

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def llm(embedded_server):
    # 600 s, not 120: four slots on two busy cores can hold a long map-reduce
    # chunk past two minutes (a CI run under load timed one out); the tests
    # check the plumbing, not the speed
    return make_chat_model(ModelSettings(timeout=600.0), base_url=embedded_server.base_url)


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # every test in this folder carries the marker: `pytest -m "not integration"` is the unit suite
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
