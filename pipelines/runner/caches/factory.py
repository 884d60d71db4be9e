"""The LLM cache a ``--cache`` value names: none, an SQLite file, or Redis."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from langchain_core.caches import BaseCache

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.caches.redis_cache import RedisCache
from lc_async_pipelines.runner.caches.sqlite import SQLiteCache
from lc_async_pipelines.runner.redis_client import REDIS_SCHEMES, redacted_url

__all__ = ["open_cache"]


def open_cache(value: str | Path | None, *, ttl_s: float | None = None) -> BaseCache | None:
    """Return the LLM cache a ``--cache`` value names.

    Args:
        value: None for no cache; a ``redis://``, ``rediss://`` or ``unix://``
            URL for a :class:`RedisCache`; any other string or path for an
            :class:`~lc_async_pipelines.runner.SQLiteCache` file (created with
            its parent folders).
        ttl_s: time-to-live of each entry, seconds (``--cache-ttl``); Redis only.

    Returns:
        The cache (the caller closes it: ``close()``, and ``await aclose()``
        for a :class:`RedisCache`), or None.

    Raises:
        ConfigurationError: a URL of another scheme (``http://...``), or
            ``ttl_s`` without a Redis cache, or ``ttl_s`` not positive.
    """
    if isinstance(value, str) and "://" in value:
        if urlsplit(value).scheme.lower() not in REDIS_SCHEMES:
            msg = (
                f"--cache {redacted_url(value)!r}: give an SQLite file path or a "
                "redis://, rediss:// or unix:// URL"
            )
            raise ConfigurationError(msg)
        return RedisCache(value, ttl_s=ttl_s)
    if ttl_s is not None:
        msg = "--cache-ttl applies to a Redis cache (--cache redis://...), not an SQLite file"
        raise ConfigurationError(msg)
    return SQLiteCache(value) if value is not None else None
