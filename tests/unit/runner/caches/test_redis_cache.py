"""The Redis cache's choice and its failures, without a server."""

import logging
import socket

import pytest

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.caches import RedisCache, SQLiteCache, open_cache


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_open_cache_picks_sqlite_or_redis(tmp_path):
    assert open_cache(None) is None
    sqlite = open_cache(tmp_path / "c.sqlite")
    assert isinstance(sqlite, SQLiteCache)
    sqlite.close()
    assert isinstance(open_cache(str(tmp_path / "d.sqlite")), SQLiteCache)
    shared = open_cache("redis://:Zq9-hunter2-x@h:1/0", ttl_s=30)
    assert isinstance(shared, RedisCache) and shared.ttl_s == 30
    assert "hunter2" not in repr(shared)
    with pytest.raises(ConfigurationError, match="--cache 'https://h/x'"):
        open_cache("https://h/x")
    with pytest.raises(ConfigurationError, match="--cache-ttl"):
        open_cache(tmp_path / "e.sqlite", ttl_s=30)
    with pytest.raises(ConfigurationError, match="time-to-live"):
        open_cache("redis://h:1/0", ttl_s=0)
    with pytest.raises(ConfigurationError, match="--cache-ttl"):
        open_cache(None, ttl_s=5)


async def test_a_cache_redis_cannot_reach_is_a_miss_with_one_warning(caplog):
    cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0")
    with caplog.at_level(logging.WARNING, logger="lc_async_pipelines.runner.caches.redis_cache"):
        assert await cache.alookup("p", "llm") is None
        await cache.aupdate("p", "llm", [])
        assert cache.lookup("p", "llm") is None
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(caplog.records) == 1 and "calls go to the model" in caplog.records[0].getMessage()
    await cache.aclose()
