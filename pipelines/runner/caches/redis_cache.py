"""An LLM cache in Redis, shared by every process that names it: :class:`RedisCache`.

Needs redis-py (``pip install 'lc-async-pipelines[redis]'``), imported when a
cache is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps

from lc_async_pipelines.errors import CacheUnavailable, ConfigurationError
from lc_async_pipelines.runner.caches._codec import load_generation, normalize_llm_string
from lc_async_pipelines.runner.redis_client import (
    checked_url,
    client_options,
    import_redis,
    one_line,
    redacted_url,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisCache"]

log = logging.getLogger(__name__)

_CACHE_PREFIX = "lc_async_pipelines:cache:"


class RedisCache(BaseCache):
    """LangChain LLM cache in Redis, keyed by (model settings, prompt), shared by every process.

    Entries are the same as :class:`~lc_async_pipelines.runner.SQLiteCache`'s:
    the key is the model's serialized settings (loopback port dropped,
    credentials scrubbed) and the prompt, hashed (SHA-256) under ``prefix``;
    the value is a JSON list of the generations serialized with
    ``langchain_core.load``, written in one ``SET`` (with ``PX`` when ``ttl_s``
    is set). Async methods use redis-py's asyncio client (one per event loop),
    sync ones a sync client; hits skip the budget, as the cache is consulted
    before the rate limiter.

    redis-py, not a package: langchain-community's ``AsyncRedisCache`` comes
    with a package that warns at import it is no longer maintained, and
    langchain-redis' ``RedisCache`` needs RedisJSON (not in Debian's
    redis-server) and pulls redisvl and numpy.

    :meth:`connect` checks once that Redis answers (``model_session`` and the
    command line call it at start: :class:`CacheUnavailable`, exit 2). After
    that, a Redis that does not answer makes a lookup a miss and an update a
    no-op (one warning per outage): the cache saves money, it never fails a call.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` or
            ``unix://``; its password is registered as a secret.
        ttl_s: seconds an entry lives (None: until evicted or cleared).
        prefix: the start of every key; :meth:`clear` deletes exactly these.

    Attributes:
        hits: lookups answered from Redis in this process.
        misses: lookups that were not.

    Raises:
        ConfigurationError: not a Redis URL, ``ttl_s`` not positive, or
            redis-py missing.
    """

    def __init__(
        self, url: str, *, ttl_s: float | None = None, prefix: str = _CACHE_PREFIX
    ) -> None:
        """Remember where the cache is; connections open on first use."""
        self.url = checked_url(url, "--cache")
        if ttl_s is not None and (isinstance(ttl_s, bool) or not ttl_s > 0):
            msg = f"cache time-to-live must be > 0 seconds, got {ttl_s!r}"
            raise ConfigurationError(msg)
        import_redis()
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.hits = 0
        self.misses = 0
        self._sync: redis.Redis | None = None
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self._down = False

    def __repr__(self) -> str:
        return f"RedisCache({redacted_url(self.url)!r}, ttl_s={self.ttl_s!r})"

    def _key(self, prompt: str, llm_string: str) -> str:
        settings = normalize_llm_string(llm_string)
        digest = hashlib.sha256(f"{settings}\0{prompt}".encode()).hexdigest()
        return self.prefix + digest

    def _value(self, return_val: RETURN_VAL_TYPE) -> str:
        return json.dumps([dumps(g) for g in return_val])

    def _px(self) -> int | None:
        return max(1, round(self.ttl_s * 1000)) if self.ttl_s is not None else None

    def _read(self, raw: bytes | str | None) -> RETURN_VAL_TYPE | None:
        if raw is None:
            self.misses += 1
            return None
        try:
            texts = json.loads(raw)
            generations = [load_generation(text) for text in texts]
        except (ValueError, TypeError, KeyError):
            self.misses += 1  # an entry this version cannot read is a miss
            return None
        self.hits += 1
        return generations

    def _failed(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "LLM cache at %s unavailable (%s); calls go to the model",
                redacted_url(self.url),
                one_line(exc),
            )

    def _client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = import_redis().Redis.from_url(self.url, **client_options(self.url))
        return self._sync

    def _aclient(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = import_redis().asyncio.Redis.from_url(self.url, **client_options(self.url))
            self._async = (loop, client)
        return self._async[1]

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Return the cached generations of this call, or None."""
        try:
            raw = self._client().get(self._key(prompt, llm_string))
        except import_redis().RedisError as exc:
            self._failed(exc)
            self.misses += 1
            return None
        self._down = False
        return self._read(raw)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations of one call (replacing any earlier ones)."""
        try:
            self._client().set(
                self._key(prompt, llm_string), self._value(return_val), px=self._px()
            )
        except import_redis().RedisError as exc:
            self._failed(exc)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup`."""
        try:
            raw = await self._aclient().get(self._key(prompt, llm_string))
        except import_redis().RedisError as exc:
            self._failed(exc)
            self.misses += 1
            return None
        self._down = False
        return self._read(raw)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async :meth:`update`."""
        key, value = self._key(prompt, llm_string), self._value(return_val)
        try:
            await self._aclient().set(key, value, px=self._px())
        except import_redis().RedisError as exc:
            self._failed(exc)

    def _pattern(self) -> str:
        return re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"

    def clear(self, **kwargs: Any) -> None:
        """Delete every entry under this cache's prefix.

        Raises:
            redis.RedisError: Redis cannot be reached.
        """
        client = self._client()
        batch: list[bytes] = []
        for key in client.scan_iter(match=self._pattern(), count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)

    async def aclear(self, **kwargs: Any) -> None:
        """Async :meth:`clear`."""
        client = self._aclient()
        batch: list[bytes] = []
        async for key in client.scan_iter(match=self._pattern(), count=500):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)

    async def connect(self) -> None:
        """Check that Redis answers (``PING``), on this event loop's client.

        Raises:
            CacheUnavailable: Redis cannot be reached; one line naming the URL
                (credentials redacted) and the cause.
            ConfigurationError: the URL is malformed.
        """
        try:
            client = self._aclient()
        except ValueError as exc:
            msg = f"cache URL {redacted_url(self.url)!r}: {one_line(exc)}"
            raise ConfigurationError(msg) from exc
        try:
            await client.ping()
        except (import_redis().RedisError, OSError) as exc:
            await self.aclose()
            msg = f"LLM cache at {redacted_url(self.url)} unreachable: {one_line(exc)}"
            raise CacheUnavailable(msg) from exc
        self._down = False

    def close(self) -> None:
        """Close the sync connection; the async one is closed by :meth:`aclose`."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close both connections (the async one if it belongs to the running loop)."""
        self.close()
        pair, self._async = self._async, None
        if pair is not None and pair[0] is asyncio.get_running_loop():
            await pair[1].aclose()
