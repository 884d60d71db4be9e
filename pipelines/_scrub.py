"""Scrub secrets from text that leaves the process: records, logs, HTTP replies, SSE events.

Error text from a model endpoint is not ours: a proxy may echo the request's
headers, key included, into its error body. Every error message is passed
through :func:`scrub` before it is written or sent. It removes the configured
secret values (registered with :func:`register_secret`, as the settings are
read) and anything shaped like a credential: ``Bearer`` tokens, ``sk-`` style
API keys, ``Authorization`` / ``api-key`` / ``x-api-key`` header values,
``password=`` / ``token=`` style pairs, AWS access key ids and JWTs.
"""

from __future__ import annotations

import re
import threading

from pydantic import SecretStr

REDACTED = "[redacted]"

_PATTERNS = [
    # header or key=value pairs whose value is a credential, e.g. "Authorization: Bearer x"
    re.compile(
        r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|api_key|apikey|"
        r"access_token|refresh_token|client_secret|password|passwd|secret|token)"
        r"(\"?\s*[:=]\s*\"?)(bearer\s+|basic\s+)?[^\s\"',;}&]+"
    ),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*"),
    # provider keys: OpenAI/Anthropic (sk-, sk-proj-, sk-ant-), LiteLLM, Groq, Google, GitHub
    re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{12,}"),
    re.compile(r"\bgsk_[A-Za-z0-9]{16,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    # a user name and password inside a URL: scheme://user:password@host
    re.compile(r"(?<=://)[^/\s:@]*:[^/\s@]+(?=@)"),  # the user may be empty: redis://:pw@h
    # JSON web tokens
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
]

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: SecretStr | str | None) -> None:
    """Remember a configured secret so that :func:`scrub` removes it wherever it appears.

    Values shorter than 4 characters are ignored: scrubbing them would blank ordinary text.
    """
    if value is None:
        return
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(text) >= 4:
        with _lock:
            _secrets.add(text)


def _pair(match: re.Match[str]) -> str:
    if match.lastindex and match.lastindex >= 2:
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return REDACTED


def scrub(text: str) -> str:
    """Return ``text`` with registered secrets and credential-shaped strings replaced.

    Replacements read ``[redacted]``; a header name or key before the value is kept,
    so the message still says what was there.
    """
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(_pair, text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub(REDACTED, text)
    return text


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """Return an exception's message, scrubbed and cut to ``limit`` characters."""
    return scrub(str(exc))[:limit]
