"""Debian's chromium under Playwright for the page tests: where it is, how it starts, what to watch.

Playwright's own browser download cannot reach its CDN here (see the Makefile's
``browser`` target); the ``browser`` fixture (conftest) launches this one.
"""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, without a sandbox; no background traffic (this machine's network is closed).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def watch(page, base: str) -> dict[str, list[str]]:
    """Record the page's requests to other origins and its CSP violations and script errors."""
    seen: dict[str, list[str]] = {"outside": [], "violations": []}
    page.on(
        "request",
        lambda r: None if r.url.startswith(base + "/") else seen["outside"].append(r.url),
    )

    def console(message) -> None:
        if message.location.get("url", "").endswith("/favicon.ico"):  # there is none: a 404
            return
        if "Content Security Policy" in message.text or message.type == "error":
            seen["violations"].append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda e: seen["violations"].append(str(e)))
    return seen
