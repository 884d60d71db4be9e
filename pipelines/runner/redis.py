"""A rate budget and an LLM cache shared through Redis, by every process that names them.

Two runs, or two service replicas, against one API key each spend the whole
limit when their budgets live in their own memory: the provider sees twice
the rate and answers 429. :class:`RedisRateBudget` keeps the limits in Redis
instead, and :class:`RedisCache` the LLM cache::

    budget = open_budget("redis://127.0.0.1:6379/0", rpm=3000, tpm=1_000_000,
                         base_url=settings.base_url, model=settings.model)
    async with budget:                        # connects; BudgetUnavailable if Redis is down
        async with model_session(settings, budget=budget,
                                 cache=open_cache("redis://127.0.0.1:6379/0")) as session:
            ...

``open_budget(None, ...)`` and ``open_cache(path)`` give the in-process
:class:`~lc_async_pipelines.runner.RateBudget` and
:class:`~lc_async_pipelines.runner.SQLiteCache`, which stay the default.
Needs redis-py (``pip install 'lc-async-pipelines[redis]'``); this module
imports without it, so ``open_budget(None)`` always works.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from lc_async_pipelines._scrub import REDACTED, register_secret, scrub
from lc_async_pipelines.errors import BudgetUnavailable, CacheUnavailable, ConfigurationError
from lc_async_pipelines.runner import _redis_scripts as scripts
from lc_async_pipelines.runner._cache_codec import load_generation, normalize_llm_string
from lc_async_pipelines.runner.budget import RateBudget
from lc_async_pipelines.runner.cache import SQLiteCache

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from redis.commands.core import AsyncScript

__all__ = [
    "REDIS_SCHEMES",
    "RedisCache",
    "RedisRateBudget",
    "budget_key",
    "open_budget",
    "open_cache",
]

log = logging.getLogger(__name__)

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
"""URL schemes read as Redis (redis-py's ``from_url``): TCP, TLS, a Unix socket."""

_MINUTE_MS = 60_000.0
_KEY_PREFIX = "lc_async_pipelines:budget"
_CACHE_PREFIX = "lc_async_pipelines:cache:"
# An idle budget's keys outlive their last reservation by this long, then vanish;
# a vanished schedule restarts primed, as a new one does.
_KEEP_MS = 60_000
# Reconnecting after an outage: exponential with jitter, capped, for ever.
_BACKOFF_INITIAL_S = 0.05
_BACKOFF_MAX_S = 2.0
_BACKOFF_JITTER_S = 0.1
_CONNECT_TIMEOUT_S = 2.0
_SOCKET_TIMEOUT_S = 5.0
# The user and password of a URL: everything between "://" and the host's last "@".
_USERINFO = re.compile(r"(?<=://)[^/?#]*@")
_INSTALL_HINT = "the Redis budget and cache need redis-py: pip install 'lc-async-pipelines[redis]'"


def _redis() -> ModuleType:
    """Import redis-py (an optional extra) or say how to install it."""
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:
        raise ConfigurationError(_INSTALL_HINT) from exc
    return redis


def _redacted_url(url: str) -> str:
    """Return ``url`` with its user and password replaced (``redis://[redacted]@host:6379/0``).

    Done here, not only by :func:`scrub`: Redis URLs carry a password with no
    user name (``redis://:secret@host``), a form scrub's URL pattern does not match.
    """
    return scrub(_USERINFO.sub(f"{REDACTED}@", url, count=1))


def _checked_url(url: object, flag: str) -> str:
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
        msg = f"{flag} {_redacted_url(url)!r}: {_one_line(exc)}"
        raise ConfigurationError(msg) from None
    if parts.scheme.lower() not in REDIS_SCHEMES:
        msg = (
            f"{flag} {_redacted_url(url)!r}: not a Redis URL; use redis://HOST:PORT/DB, "
            "rediss:// (TLS) or unix:///path/to/redis.sock"
        )
        raise ConfigurationError(msg)
    register_secret(parts.password)
    for password in parse_qs(parts.query).get("password", []):  # unix://...?password=
        register_secret(password)
    return url


def _one_line(exc: BaseException) -> str:
    """Return ``ExcClass: message``, scrubbed, on one line."""
    text = " ".join(str(exc).split()) or "no detail"
    return scrub(f"{type(exc).__name__}: {text}")[:300]


def _unavailable(url: str, exc: BaseException) -> BudgetUnavailable:
    """Map an error of redis-py (or the socket under it) to one clear, scrubbed line."""
    return BudgetUnavailable(f"shared budget at {_redacted_url(url)} unreachable: {_one_line(exc)}")


def _is_outage(exc: BaseException) -> bool:
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


def budget_key(base_url: str | None, model: str | None) -> str:
    """Return the Redis key of the budget for an endpoint and model.

    Processes that should share limits must use the same key: the default is
    derived from the endpoint and model, so runs against one endpoint and model
    share, and others do not. Providers limit per API key, not per endpoint:
    runs with different keys on one endpoint pass their own ``key`` instead.

    Args:
        base_url: the endpoint root (``https://api.openai.com/v1``); None for
            the default endpoint. Credentials and the query are dropped and the
            rest is hashed, so the key holds no secret and no URL.
        model: the model name; kept readable in the key (characters other than
            letters, digits, ``.``, ``_`` and ``-`` become ``_``).

    Returns:
        ``lc_async_pipelines:budget:<model>:<16 hex digits>``.
    """
    endpoint = ""
    if base_url:
        # credentials and the query never enter the hash
        bare = _USERINFO.sub("", base_url.strip(), count=1).split("?")[0].split("#")[0]
        scheme, _, rest = bare.rpartition("://")
        host, _, path = rest.partition("/")
        endpoint = f"{scheme.lower()}://{host.lower()}/{path.rstrip('/')}"
    digest = hashlib.sha256(f"{endpoint}\n{model or ''}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", model or "default")[:64]
    return f"{_KEY_PREFIX}:{name}:{digest}"


def _rebuild(cls: type[RedisRateBudget], settings: dict[str, Any]) -> RedisRateBudget:
    return cls(**settings)


@dataclass(kw_only=True, eq=False, repr=False)
class RedisRateBudget(RateBudget):
    """A :class:`~lc_async_pipelines.runner.RateBudget` whose limits live in Redis, shared.

    Every process (or machine) that uses the same Redis URL and ``key`` draws
    from one set of limits: requests per minute, tokens per minute (charged by
    estimate before a call, corrected by its reported usage after, as
    ``RateBudget`` does) and the pause after a 429. Use it wherever a
    ``RateBudget`` goes: ``with_budget(llm, budget)``, ``BudgetRateLimiter``,
    ``model_session(budget=...)``; ``requests_sent``, ``throttled`` and
    ``cool_down(seconds)`` work the same, counted in this process.
    ``max_in_flight`` stays per process (calls in flight are a property of a
    process' connections, not of the provider's limit).

    Algorithm: GCRA (the generic cell rate algorithm, as in redis-cell,
    https://github.com/brandur/redis-cell, and https://brandur.org/rate-limiting),
    one Lua script per call run atomically in Redis on Redis' clock (``TIME``),
    so process clocks do not matter. The script reserves the earliest send time
    that fits the RPM schedule, the TPM bucket and the shared pause, and
    returns the wait; the caller sleeps it and sends: one round-trip per call,
    callers served in the order they reached Redis (as the in-memory bucket
    serves its waiters), and a second round-trip after the call when TPM is
    limited, to charge or refund the difference between estimate and usage. The
    shapes match ``RateBudget``: RPM is a bucket of room for 2 requests primed
    with 1 (requests ``60 / rpm`` s apart, no burst at the start), TPM a bucket
    of one second's tokens starting full, both at ``1 - margin`` of the limit.
    A charge larger than the bucket waits until it has drained enough (the
    in-memory bucket's pieces, in one step). See
    :mod:`lc_async_pipelines.runner._redis_scripts`.

    Connect first: ``await budget.connect()`` (or ``async with budget:``)
    checks that Redis answers and raises :class:`BudgetUnavailable` if not. A
    budget never connected connects on its first call, with the same error.
    Once connected, a Redis lost mid-run makes calls wait and reconnect with
    backoff (exponential with jitter, capped at 2 s, for ever; an item's
    deadline still applies), logging one warning per outage: it never falls
    back to unlimited. Restarted empty (no persistence), the schedule resumes
    from the latest one this process saw, not from an empty bucket. The client
    is bound to the event loop it connects on; :meth:`aclose` releases it.

    Pickled (to a Ray actor), a budget travels as its settings and arrives
    unconnected.

    Args:
        rpm, tpm, max_in_flight, default_max_tokens, cooldown_s, margin: as
            :class:`~lc_async_pipelines.runner.RateBudget`; every process
            sharing ``key`` should pass the same limits.
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path.sock``. Its password is registered as a secret and
            never shown (``repr``, errors and logs print ``[redacted]``).
        key: the budget's name in Redis (:func:`budget_key` derives one from
            the endpoint and model). Its keys are ``{key}:rpm``, ``{key}:tpm``,
            ``{key}:pause`` and ``{key}:latest`` (braced: one Redis Cluster
            slot), kept 60 s past their last use.

    Attributes:
        round_trips: scripts sent to Redis by this process (retries included).

    Raises:
        ConfigurationError: a limit out of range, a URL that is not Redis, an
            empty key, or redis-py missing (on connect).
    """

    url: str
    key: str
    round_trips: int = field(init=False, default=0)
    _interval_ms: float = field(init=False, default=0.0)
    _tokens_per_ms: float = field(init=False, default=0.0)
    _client: redis.asyncio.Redis | None = field(init=False, default=None)
    _scripts: dict[str, AsyncScript] = field(init=False, default_factory=dict)
    _connecting: asyncio.Lock | None = field(init=False, default=None)
    _pending: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    _floors: list[float] = field(init=False, default_factory=lambda: [0.0, 0.0])
    _debt: float = field(init=False, default=0.0)
    _outage_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        _checked_url(self.url, "budget URL")
        if not isinstance(self.key, str) or not self.key.strip():
            msg = f"budget key must be a non-empty string, got {self.key!r}"
            raise ConfigurationError(msg)
        super().__post_init__()

    def _make_limits(self, share: float) -> None:
        if self.rpm:
            self._interval_ms = _MINUTE_MS / (self.rpm * share)
        if self.tpm:
            self._tokens_per_ms = self.tpm * share / _MINUTE_MS
        if self.max_in_flight:
            self._slots = asyncio.Semaphore(self.max_in_flight)

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.init and f.name not in ("url", "key")
        )
        return f"RedisRateBudget(url={_redacted_url(self.url)!r}, key={self.key!r}, {limits})"

    def __reduce__(self) -> tuple[Any, ...]:
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return (_rebuild, (type(self), settings))

    @property
    def _keys(self) -> list[str]:
        return [f"{{{self.key}}}:{part}" for part in ("rpm", "tpm", "pause", "latest")]

    async def connect(self) -> None:
        """Connect to Redis and check that it answers (``PING``); nothing if already connected.

        Raises:
            BudgetUnavailable: Redis cannot be reached; one line naming the URL
                (credentials redacted) and the cause.
            ConfigurationError: redis-py is not installed, or the URL is malformed.
        """
        if self._client is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._client is not None:
                return
            redis = _redis()
            try:
                client = redis.asyncio.Redis.from_url(
                    self.url,
                    # One quick retry for a pooled connection Redis dropped; outages are ours.
                    retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1),
                    socket_connect_timeout=_CONNECT_TIMEOUT_S,
                    socket_timeout=_SOCKET_TIMEOUT_S,
                )
            except ValueError as exc:
                msg = f"budget URL {_redacted_url(self.url)!r}: {_one_line(exc)}"
                raise ConfigurationError(msg) from exc
            try:
                await client.ping()
            except redis.RedisError as exc:
                await client.aclose()
                raise _unavailable(self.url, exc) from exc
            self._scripts = {
                "reserve": client.register_script(scripts.RESERVE),
                "adjust": client.register_script(scripts.ADJUST),
                "pause": client.register_script(scripts.PAUSE),
            }
            self._client = client

    async def aclose(self) -> None:
        """Drop pending pause notices and close the connection (connect again to reuse)."""
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def cool_down(self, seconds: float | None) -> None:
        """Hold every new request of every process sharing the budget for ``seconds``.

        This process pauses at once; the others once Redis has the pause (a
        task sends it; if Redis is down then, only this process pauses).
        """
        super().cool_down(seconds)
        wait = self.cooldown_s if seconds is None else seconds
        task = asyncio.get_running_loop().create_task(self._publish_pause(wait))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_pause(self, seconds: float) -> None:
        script = self._scripts.get("pause")
        if script is None:
            return
        try:
            self.round_trips += 1
            await script(keys=self._keys[2:3], args=[seconds * 1000, 0])
        except Exception as exc:  # a lost pause notice must not fail anything
            log.debug("pause not shared: %s", _one_line(exc))

    async def _take(self, tokens: float) -> None:
        if not (self._interval_ms or self._tokens_per_ms):
            return
        debt, self._debt = self._debt, 0.0  # usage a failed settle could not charge
        args = [
            self._interval_ms,
            self._RPM_ROOM,
            tokens + debt if self._tokens_per_ms else 0,
            self._tokens_per_ms,
            self._TPM_DEPTH_S * 1000,
            *self._floors,
            0,  # now: Redis' clock
            _KEEP_MS,
        ]
        try:
            wait_us, requests_tat, tokens_tat = await self._run("reserve", self._keys, args)
        except BaseException:
            self._debt += debt
            raise
        self._floors = [
            max(self._floors[0], float(requests_tat)),
            max(self._floors[1], float(tokens_tat)),
        ]
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1e6)

    async def _correct(self, difference: float) -> None:
        script = self._scripts.get("adjust")
        if not difference or script is None:
            return
        try:
            # One try: a finished call must not wait for Redis. What it owes is
            # charged with this process' next reservation; a lost refund is only caution.
            self.round_trips += 1
            await script(
                keys=self._keys[1:2],
                args=[difference, self._tokens_per_ms, self._TPM_DEPTH_S * 1000, 0, _KEEP_MS],
            )
        except Exception as exc:
            if difference > 0:
                self._debt += difference
            log.debug("usage not settled in Redis: %s", _one_line(exc))

    async def _run(self, name: str, keys: list[str], args: list[float]) -> list[Any]:
        """Run one script, waiting out outages with backoff; return its reply.

        Raises:
            BudgetUnavailable: never connected and Redis is down, or Redis
                refused the script (not an outage: permissions, wrong key type).
        """
        if self._client is None:
            await self.connect()
        script = self._scripts[name]
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_outage),
            wait=wait_exponential_jitter(
                multiplier=_BACKOFF_INITIAL_S, max=_BACKOFF_MAX_S, jitter=_BACKOFF_JITTER_S
            ),
            before_sleep=self._outage_began,
            reraise=True,
        )
        reply: list[Any] = []
        try:
            async for attempt in retrying:
                with attempt:
                    self.round_trips += 1
                    reply = await script(keys=keys, args=args)
        except Exception as exc:
            if isinstance(exc, BudgetUnavailable | ConfigurationError):
                raise
            raise _unavailable(self.url, exc) from exc
        self._outage_ended()
        return reply

    def _outage_began(self, state: RetryCallState) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        exc = state.outcome.exception() if state.outcome else None
        cause = _one_line(exc) if exc is not None else "no reply"
        log.warning(
            "shared budget at %s unreachable (%s); model calls wait and reconnect "
            "until it is back, never unlimited",
            _redacted_url(self.url),
            cause,
        )

    def _outage_ended(self) -> None:
        if self._outage_since is None:
            return
        seconds = time.monotonic() - self._outage_since
        self._outage_since = None
        log.warning("shared budget at %s is back after %.1f s", _redacted_url(self.url), seconds)


def open_budget(
    url: str | None,
    *,
    key: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    max_in_flight: int | None = None,
    default_max_tokens: int = 512,
    cooldown_s: float = 1.0,
    margin: float = 0.01,
) -> RateBudget:
    """Return the budget a ``--budget`` value names, not yet connected.

    Args:
        url: None or empty for the in-memory :class:`RateBudget` (the default);
            ``redis://``, ``rediss://`` or ``unix://`` for a
            :class:`RedisRateBudget` shared through that Redis.
        key: the Redis budget's key (default: :func:`budget_key` of
            ``base_url`` and ``model``); ignored in memory.
        base_url: the model endpoint, for the default key.
        model: the model name, for the default key.
        rpm: requests per minute (None: unlimited), as :class:`RateBudget`.
        tpm: tokens per minute (None: unlimited), as :class:`RateBudget`.
        max_in_flight: model calls in flight at once, per process.
        default_max_tokens: a call's output charge when it sets no ``max_tokens``.
        cooldown_s: pause after a 429 without ``Retry-After``, seconds.
        margin: fraction of ``rpm`` and ``tpm`` left unused.

    Returns:
        A :class:`RateBudget` or :class:`RedisRateBudget`; either works as
        ``async with budget:`` (a Redis one connects there, raising
        :class:`BudgetUnavailable` when Redis does not answer).

    Raises:
        ConfigurationError: a URL of another scheme (the message names the
            ``--budget`` value, credentials redacted) or a limit out of range.
    """
    limits: dict[str, Any] = {
        "rpm": rpm,
        "tpm": tpm,
        "max_in_flight": max_in_flight,
        "default_max_tokens": default_max_tokens,
        "cooldown_s": cooldown_s,
        "margin": margin,
    }
    if not url:
        return RateBudget(**limits)
    _checked_url(url, "--budget")
    return RedisRateBudget(url=url, key=key or budget_key(base_url, model), **limits)


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
        self.url = _checked_url(url, "--cache")
        if ttl_s is not None and (isinstance(ttl_s, bool) or not ttl_s > 0):
            msg = f"cache time-to-live must be > 0 seconds, got {ttl_s!r}"
            raise ConfigurationError(msg)
        _redis()
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.hits = 0
        self.misses = 0
        self._sync: redis.Redis | None = None
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self._down = False

    def __repr__(self) -> str:
        return f"RedisCache({_redacted_url(self.url)!r}, ttl_s={self.ttl_s!r})"

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
                _redacted_url(self.url),
                _one_line(exc),
            )

    def _client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = _redis().Redis.from_url(
                self.url,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                socket_timeout=_SOCKET_TIMEOUT_S,
            )
        return self._sync

    def _aclient(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = _redis().asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                socket_timeout=_SOCKET_TIMEOUT_S,
            )
            self._async = (loop, client)
        return self._async[1]

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Return the cached generations of this call, or None."""
        try:
            raw = self._client().get(self._key(prompt, llm_string))
        except _redis().RedisError as exc:
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
        except _redis().RedisError as exc:
            self._failed(exc)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup`."""
        try:
            raw = await self._aclient().get(self._key(prompt, llm_string))
        except _redis().RedisError as exc:
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
        except _redis().RedisError as exc:
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
            msg = f"cache URL {_redacted_url(self.url)!r}: {_one_line(exc)}"
            raise ConfigurationError(msg) from exc
        try:
            await client.ping()
        except (_redis().RedisError, OSError) as exc:
            await self.aclose()
            msg = f"LLM cache at {_redacted_url(self.url)} unreachable: {_one_line(exc)}"
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
                f"--cache {_redacted_url(value)!r}: give an SQLite file path or a "
                "redis://, rediss:// or unix:// URL"
            )
            raise ConfigurationError(msg)
        return RedisCache(value, ttl_s=ttl_s)
    if ttl_s is not None:
        msg = "--cache-ttl applies to a Redis cache (--cache redis://...), not an SQLite file"
        raise ConfigurationError(msg)
    return SQLiteCache(value) if value is not None else None
