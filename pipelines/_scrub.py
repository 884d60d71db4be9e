"""Scrub secrets from text that leaves the process: records, logs, HTTP replies, SSE events.

Error text from a model endpoint is not ours: a proxy may echo the request's
headers, key included, into its error body. Every error message is passed
through :func:`scrub` before it is written or sent. It removes the configured
secret values (registered with :func:`register_secret`, as the settings are
read, and :func:`register_url_secrets` for an endpoint URL) and anything shaped
like a credential: ``Bearer`` tokens, ``sk-`` style API keys, AWS access key
ids, JWTs, a URL's ``user:password@``, and the value of every ``NAME=value``
(a query string's ``?key=...&sig=...`` too) or ``NAME: value`` whose name is a
credential's (:func:`is_secret_name`).

A name is a credential's by its last word, not by containing one: ``DB_PASSWORD``,
``AWS_SECRET_ACCESS_KEY``, ``x-api-key``, ``apiKey`` and ``sig`` are;
``/etc/passwd``, ``secretary``, ``passwords`` and ``max_tokens`` are not.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import SecretStr

__all__ = [
    "REDACTED",
    "error_text",
    "is_secret_name",
    "register_secret",
    "register_url_secrets",
    "scrub",
    "scrub_url",
]

REDACTED = "[redacted]"

# The last word of a credential's name (DB_PASSWORD, AWS_SECRET_ACCESS_KEY, apiKey, x-api-key).
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "secret", "token", "key", "apikey", "credential"}
)
# Whole names that are credentials though their last word is not one of those.
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "auth",
        "sig",
        "signature",
        "pass",
        "credentials",
        "x-amz-credential",
        "x-amz-signature",
        "x-goog-credential",
        "x-goog-signature",
    }
)
# Followed by ":" rather than "=", a name is a credential's only when it cannot be
# a word of a sentence ("the key: ..."): a compound name, or one of these.
_COLON_NAMES = frozenset({"authorization", "proxy-authorization", "password", "passwd"})
_WORD_BREAK = re.compile(r"[_.\-]|(?<=[a-z0-9])(?=[A-Z])")

_WORDS = "|".join(sorted(_SECRET_WORDS, key=len, reverse=True))
_NAMES = "|".join(sorted(_SECRET_NAMES, key=len, reverse=True))
# NAME=value, NAME: value, "NAME": "value", 'NAME': 'value', ?NAME=value&...: the name starts a word
# (not inside a path such as /etc/passwd, nor a longer word such as monkey) and
# ends in a credential's word after a separator or a camelCase hump.
_PAIR = re.compile(
    r"(?<![\w.\-/\\])(?P<name>"
    rf"(?:[A-Za-z][A-Za-z0-9_.\-]*?(?:[_.\-]|(?<=[a-z0-9])(?=[A-Z])))?(?i:{_WORDS})"
    rf"|(?i:{_NAMES}))"
    r"(?P<sep>[\"']?\s*(?P<op>[:=])\s*)(?P<quote>[\"'])?"
    r"(?P<scheme>(?i:bearer|basic)\s+)?"
    r"(?(quote)[^\"'\n]*|[^\s\"',;}&#<>]+)"
)

_PATTERNS = [
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


def is_secret_name(name: str) -> bool:
    """True when ``name`` (of a variable, header, field or query parameter) names a credential.

    Its last word decides (words split at ``_``, ``-``, ``.`` and camelCase):
    password, passwd, pwd, passphrase, secret, token, key, apikey or
    credential; or the whole name is one of authorization, auth, sig,
    signature, pass, credentials and the cloud-signature parameters
    (``X-Amz-Signature``, ...). Case does not matter.
    """
    words = [word for word in _WORD_BREAK.split(name) if word]
    if not words:
        return False
    return words[-1].lower() in _SECRET_WORDS or name.lower() in _SECRET_NAMES


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


def register_url_secrets(url: str | None) -> None:
    """Remember the password and the credential query values of ``url`` as secrets.

    For a configured endpoint (``OPENAI_BASE_URL=https://host/v1?key=...``):
    its ``key=`` (any :func:`is_secret_name` parameter) then never shows,
    whatever text carries it, even without its name. A URL that does not
    parse registers nothing (:func:`scrub` still redacts by shape).
    """
    if not url:
        return
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return
    register_secret(password)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if is_secret_name(name):
            register_secret(value)


def _pair(match: re.Match[str]) -> str:
    name, sep, op = match.group("name"), match.group("sep"), match.group("op")
    compound = len([w for w in _WORD_BREAK.split(name) if w]) > 1
    if op == ":" and not (compound or name.lower() in _COLON_NAMES or sep.startswith(("'", '"'))):
        return match.group(0)  # "the key: ..." in a sentence
    opened = (match.group("quote") or "") + (match.group("scheme") or "")
    return f"{name}{sep}{opened}{REDACTED}"


def scrub(text: str) -> str:
    """Return ``text`` with registered secrets and credential-shaped strings replaced.

    Replacements read ``[redacted]``; a header name or key before the value is kept,
    so the message still says what was there.
    """
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    text = _PAIR.sub(_pair, text)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def scrub_url(url: str) -> str:
    """Return ``url`` fit to show: its ``user:password@`` and every query value redacted.

    For an endpoint a user configured (``OPENAI_BASE_URL``), whose query may
    carry a key under any name: ``https://h/v1?key=abc&x=1`` reads
    ``https://h/v1?key=[redacted]&x=[redacted]``. The rest goes through :func:`scrub`.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return scrub(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    pairs = [p.split("=", 1)[0] + f"={REDACTED}" for p in parts.query.split("&") if p]
    return scrub(urlunsplit(parts._replace(netloc=netloc, query="&".join(pairs))))


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """Return an exception's message, scrubbed and cut to ``limit`` characters."""
    return scrub(str(exc))[:limit]
