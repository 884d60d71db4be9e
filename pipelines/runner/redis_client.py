"""Redis, as the shared budget and the shared cache reach it: the client, URLs, outages.

One place for what both need: redis-py imported on first use (an optional
extra: ``pip install 'lc-async-pipelines[redis]'``), which URLs are Redis
(:data:`REDIS_SCHEMES`), a URL's password registered as a secret and shown
redacted, and which errors are an outage that passes (a lost connection, a
timeout, a replica loading) rather than a refusal.

The password may stay out of the URL, and so out of ``ps``: a URL without
one uses ``$REDIS_PASSWORD`` (:func:`client_options`).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lc_async_pipelines._scrub import REDACTED, register_secret, scrub
from lc_async_pipelines.errors import ConfigurationError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PASSWORD_VARIABLE",
    "REDIS_SCHEMES",
    "SOCKET_TIMEOUT_S",
    "checked_url",
    "client_options",
    "import_redis",
    "is_outage",
    "is_redis_url",
    "one_line",
    "redacted_url",
    "without_userinfo",
]

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
"""URL schemes read as Redis (redis-py's ``from_url``): TCP, TLS, a Unix socket."""

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0

PASSWORD_VARIABLE = "REDIS_PASSWORD"
"""The environment variable read for the password of a Redis URL that has none."""

# The user and password of a URL: everything between "://" and the host's last "@".
_USERINFO = re.compile(r"(?<=://)[^/?#]*@")
_INSTALL_HINT = "the Redis budget and cache need redis-py: pip install 'lc-async-pipelines[redis]'"


def import_redis() -> ModuleType:
    """Import redis-py (an optional extra) or say how to install it."""
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:
        raise ConfigurationError(_INSTALL_HINT) from exc
    return redis


def redacted_url(url: str) -> str:
    """Return ``url`` with its user and password replaced (``redis://[redacted]@host:6379/0``).

    Done here, not only by :func:`scrub`: Redis URLs carry a password with no
    user name (``redis://:secret@host``), a form scrub's URL pattern does not match.
    """
    return scrub(_USERINFO.sub(f"{REDACTED}@", url, count=1))


def checked_url(url: object, flag: str) -> str:
    """Return ``url`` if it is a Redis URL; remember its password as a secret.

    Raises:
        ConfigurationError: not a string, or another scheme; names ``flag`` and the value.
    """
    if not isinstance(url, str) or not url.strip():
        msg = f"{flag} must be a Redis URL (redis://HOST:PORT/DB), got {url!r}"
        raise ConfigurationError(msg)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a malformed [IPv6] host
        msg = f"{flag} {redacted_url(url)!r}: {one_line(exc)}"
        raise ConfigurationError(msg) from None
    if parts.scheme.lower() not in REDIS_SCHEMES:
        msg = (
            f"{flag} {redacted_url(url)!r}: not a Redis URL; use redis://HOST:PORT/DB, "
            "rediss:// (TLS) or unix:///path/to/redis.sock"
        )
        raise ConfigurationError(msg)
    register_secret(parts.password)
    for password in parse_qs(parts.query).get("password", []):  # unix://...?password=
        register_secret(password)
    return url


def client_options(url: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url(url, ...)``: timeouts, and a password.

    The password is ``$REDIS_PASSWORD`` (registered as a secret) when ``url``
    carries none; redis-py lets a URL's own password win over this argument
    (``redis.connection.parse_url`` values update the keyword arguments).

    Args:
        url: the Redis URL the client is for.
        environ: the environment (default ``os.environ``).
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
    }
    password = (os.environ if environ is None else environ).get(PASSWORD_VARIABLE)
    try:
        in_url = urlsplit(url).password or parse_qs(urlsplit(url).query).get("password")
    except ValueError:
        in_url = None
    if password and not in_url:
        register_secret(password)
        options["password"] = password
    return options


def one_line(exc: BaseException) -> str:
    """Return ``ExcClass: message``, scrubbed, on one line (a refused password: how to give one)."""
    text = " ".join(str(exc).split()) or "no detail"
    line = scrub(f"{type(exc).__name__}: {text}")[:300]
    exceptions = getattr(sys.modules.get("redis"), "exceptions", None)
    if exceptions is not None and isinstance(exc, exceptions.AuthenticationError):
        line += f" (set {PASSWORD_VARIABLE}, or give the password in the URL)"
    return line


def is_outage(exc: BaseException) -> bool:
    """True for errors that pass when Redis is back: lost connection, timeout, loading, failover."""
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return True
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover - no client, no outage to wait out
        return False
    return isinstance(
        exc,
        exceptions.ConnectionError  # BusyLoadingError and AuthenticationError too
        | exceptions.TimeoutError
        | exceptions.ReadOnlyError
        | exceptions.TryAgainError
        | exceptions.MasterDownError
        | exceptions.ClusterDownError,
    )


def is_redis_url(value: str) -> bool:
    """True when ``value`` is a URL of one of :data:`REDIS_SCHEMES` (any case)."""
    return "://" in value and urlsplit(value).scheme.lower() in REDIS_SCHEMES


def without_userinfo(url: str) -> str:
    """Return ``url`` without its user and password (everything up to the host's last ``@``)."""
    return _USERINFO.sub("", url, count=1)
