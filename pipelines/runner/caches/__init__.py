"""LLM caches: an identical call is never paid twice.

:class:`SQLiteCache` (one file, this machine) and :class:`RedisCache` (shared
by every process that names it) store the same entries (one codec, in
:mod:`lc_async_pipelines.runner.caches._codec`); :func:`with_cache` puts one
on a chat model, :func:`open_cache` picks the one a ``--cache`` value names.
"""

from lc_async_pipelines.runner.caches.factory import open_cache
from lc_async_pipelines.runner.caches.redis_cache import RedisCache
from lc_async_pipelines.runner.caches.sqlite import SQLiteCache, with_cache

__all__ = ["RedisCache", "SQLiteCache", "open_cache", "with_cache"]
