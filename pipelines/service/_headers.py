"""Security headers on every response: a same-origin CSP, no framing, no sniffing, no referrer.

The page's inline ``<script>`` and ``<style>`` (and the ``/docs`` page's
style) are allowed by their SHA-256 hashes (:func:`content_security_policy`),
so the policy needs neither ``'unsafe-inline'`` nor any origin but ``'self'``:
nothing is loaded from outside the machine.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy", "inline_hashes"]

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def inline_hashes(html: str) -> dict[str, list[str]]:
    """Return the CSP hash sources of an HTML page's inline scripts and styles.

    Only bare ``<script>`` and ``<style>`` elements (no attributes) are
    hashed; the hash covers the element's text exactly as written.

    Returns:
        ``{"script": ["'sha256-...'", ...], "style": [...]}``.
    """
    found: dict[str, list[str]] = {"script": [], "style": []}
    for match in _INLINE.finditer(html):
        digest = hashlib.sha256(match.group(2).encode("utf-8")).digest()
        found[match.group(1).lower()].append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return found


def content_security_policy(pages: Iterable[str]) -> str:
    """Return a policy allowing only this origin, plus the inline code of ``pages`` by hash.

    Args:
        pages: the HTML the service serves; their inline scripts and styles are allowed.

    Returns:
        The ``Content-Security-Policy`` header value.
    """
    scripts: list[str] = []
    styles: list[str] = []
    for html in pages:
        found = inline_hashes(html)
        scripts += found["script"]
        styles += found["style"]
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *dict.fromkeys(scripts)]),
            " ".join(["style-src 'self'", *dict.fromkeys(styles)]),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware: add the security headers to every HTTP response.

    ``Content-Security-Policy`` (``csp``), ``X-Frame-Options: DENY``,
    ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``
    replace any the app set.

    Args:
        app: the application behind it.
        csp: the ``Content-Security-Policy`` value (:func:`content_security_policy`).
    """

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode("latin-1")),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the headers to its response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in self.names
                ]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, sending)
