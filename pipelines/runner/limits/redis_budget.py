"""A rate budget shared through Redis by every process that names it.

Two runs, or two service replicas, against one API key each spend the whole
limit when their budgets live in their own memory: the provider sees twice
the rate and answers 429. :class:`RedisRateBudget` keeps the limits in Redis
instead (its :class:`RedisBudgetStore`)::

    budget = open_budget("redis://127.0.0.1:6379/0", rpm=3000, tpm=1_000_000,
                         base_url=settings.base_url, model=settings.model)
    async with budget:                        # connects; BudgetUnavailable if Redis is down
        async with model_session(settings, budget=budget) as session:
            ...

``open_budget(None, ...)`` gives the in-process
:class:`~lc_async_pipelines.runner.RateBudget`, which stays the default.
Needs redis-py (``pip install 'lc-async-pipelines[redis]'``); this module
imports without it, so ``open_budget(None)`` always works.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from lc_async_pipelines.errors import BudgetUnavailable, ConfigurationError
from lc_async_pipelines.runner.limits import _redis_scripts as scripts
from lc_async_pipelines.runner.limits.budget import RateBudget, TpmCharge, check_limits
from lc_async_pipelines.runner.limits.store import WINDOW_GUARD_S, WINDOW_S, BudgetRates
from lc_async_pipelines.runner.redis_client import (
    checked_url,
    client_options,
    import_redis,
    is_outage,
    one_line,
    redacted_url,
    without_userinfo,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from redis.commands.core import AsyncScript

__all__ = ["RedisBudgetStore", "RedisRateBudget", "SharedUse", "budget_key", "open_budget"]

log = logging.getLogger(__name__)

_MINUTE_MS = 60_000.0
_KEY_PREFIX = "lc_async_pipelines:budget"

# An idle budget's keys outlive their last reservation by this long, then vanish;
# a vanished schedule restarts primed, as a new one does.
_KEEP_MS = 60_000

# A run that has not checked in (:meth:`RedisRateBudget.shared_use`) for this
# long no longer counts as sharing the budget.
_PRESENCE_STALE_MS = 15_000

# Reconnecting after an outage: exponential with jitter, capped, for ever.
_BACKOFF_INITIAL_S = 0.05
_BACKOFF_MAX_S = 2.0
_BACKOFF_JITTER_S = 0.1


def _unavailable(url: str, exc: BaseException) -> BudgetUnavailable:
    """Map an error of redis-py (or the socket under it) to one clear, scrubbed line."""
    return BudgetUnavailable(f"shared budget at {redacted_url(url)} unreachable: {one_line(exc)}")


def _text(value: Any) -> str:
    """A script's reply as text (redis-py answers bytes unless asked to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _limit_text(value: float | None) -> str:
    """A limit as it goes in a key or a presence entry: ``600``, ``1.5``, ``-`` for none."""
    return f"{value:g}" if value else "-"


def budget_key(
    base_url: str | None,
    model: str | None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> str:
    """Return the Redis key of the budget for an endpoint, a model and the run's limits.

    Processes that should share limits must use the same key: the default is
    derived from the endpoint, the model and the limits, so runs against one
    endpoint and model at the same ``--rpm``/``--tpm`` share (copies of one job,
    service replicas), and a run at other limits gets a budget of its own
    rather than being held to a schedule paced for another rate (two runs at
    600 and 60 RPM on one key both went at about the slower one's pace).
    Providers limit per API key, not per endpoint: runs with different keys on
    one endpoint, or runs at different limits that must share one, pass their
    own ``key`` instead.

    Args:
        base_url: the endpoint root (``https://api.openai.com/v1``); None for
            the default endpoint. Credentials and the query are dropped and the
            rest is hashed, so the key holds no secret and no URL.
        model: the model name; kept readable in the key (characters other than
            letters, digits, ``.``, ``_`` and ``-`` become ``_``).
        rpm: the run's requests per minute (None: unlimited).
        tpm: the run's tokens per minute (None: unlimited).

    Returns:
        ``lc_async_pipelines:budget:<model>:<16 hex digits>``.
    """
    endpoint = ""
    if base_url:
        # credentials and the query never enter the hash
        bare = without_userinfo(base_url.strip()).split("?")[0].split("#")[0]
        scheme, _, rest = bare.rpartition("://")
        host, _, path = rest.partition("/")
        endpoint = f"{scheme.lower()}://{host.lower()}/{path.rstrip('/')}"
    limits = f"\nrpm={_limit_text(rpm)} tpm={_limit_text(tpm)}"
    digest = hashlib.sha256(f"{endpoint}\n{model or ''}{limits}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", model or "default")[:64]
    return f"{_KEY_PREFIX}:{name}:{digest}"


def _limit_value(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value or None


@dataclass(frozen=True)
class SharedUse:
    """Who draws from a shared budget now: the runs that checked in lately, and their limits.

    Attributes:
        runs: runs seen within the last 15 s, this one included.
        limits: the other runs' ``(rpm, tpm)`` that differ from this run's
            (None: unlimited), each once.
    """

    runs: int = 1
    limits: list[tuple[float | None, float | None]] = field(default_factory=list)


class RedisBudgetStore:
    """A budget's rates metered in Redis, shared by every process that names the same ``key``.

    The client's side of :mod:`lc_async_pipelines.runner.limits._redis_scripts`:
    :meth:`reserve` is one round-trip (the ``RESERVE`` script, retried through
    outages), :meth:`adjust` one more when TPM is limited (``ADJUST``, tried
    once: a finished call must not wait for Redis; what it owes is charged with
    this process' next reservation), :meth:`pause` one in a task (``PAUSE``).
    The script floors carry the schedule this process last saw, so a Redis
    restarted empty does not start from an empty bucket.

    Args:
        url: a Redis URL (checked by the caller).
        key: the budget's name in Redis.
        rates: the rates to meter.

    Attributes:
        url: the Redis URL.
        key: the budget's name in Redis.
        rates: the rates metered.
        interval_ms: milliseconds between requests (0: no RPM limit).
        tokens_per_ms: tokens a millisecond (0: no TPM limit).
        round_trips: scripts sent to Redis by this process (retries included).
    """

    def __init__(self, url: str, key: str, rates: BudgetRates) -> None:
        self.url = url
        self.key = key
        self.rates = rates
        self.interval_ms = 0.0
        self.tokens_per_ms = 0.0
        self.set_pace(1.0)
        self.round_trips = 0
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._connecting: asyncio.Lock | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._floors = [0.0, 0.0]
        self._late: list[Any] = [0, 0.0]  # this process's last booking and how late it went
        self._debt = 0.0
        self._outage_since: float | None = None

    @property
    def connected(self) -> bool:
        """True while a client is connected (or attached)."""
        return self._client is not None

    @property
    def owed_tokens(self) -> float:
        """Tokens a failed :meth:`adjust` could not charge: they go with the next reservation."""
        return self._debt

    @property
    def keys(self) -> list[str]:
        """The budget's keys: ``{key}:rpm``, ``:tpm``, ``:pause``, ``:latest``, and the window's.

        The window's: ``{key}:window``, ``{key}:window_tokens``, ``{key}:bookings``.
        """
        parts = ("rpm", "tpm", "pause", "latest", "window", "window_tokens", "bookings")
        return [f"{{{self.key}}}:{part}" for part in parts]

    @property
    def runs_key(self) -> str:
        """The key of the runs drawing from the budget: ``{key}:runs`` (:meth:`presence`)."""
        return f"{{{self.key}}}:runs"

    async def presence(self, member: str) -> list[str]:
        """Check ``member`` in as drawing from the budget; return every member seen in 15 s.

        One script, tried once (what it tells is for people, not for the
        schedule); connects first if needed.

        Raises:
            BudgetUnavailable: never connected and Redis is down.
            redis.RedisError: Redis did not answer this time.
        """
        if self._client is None:
            await self.connect()
        script = self._scripts["presence"]
        self.round_trips += 1
        reply = await script(keys=[self.runs_key], args=[member, _PRESENCE_STALE_MS, 0])
        return [_text(m) for m in reply]

    def attach(self, client: Any) -> None:
        """Use ``client`` (a redis-py asyncio client, connected) and register the scripts on it."""
        self._scripts = {
            "reserve": client.register_script(scripts.RESERVE),
            "adjust": client.register_script(scripts.ADJUST),
            "pause": client.register_script(scripts.PAUSE),
            "presence": client.register_script(scripts.PRESENCE),
        }
        self._client = client

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
            redis = import_redis()
            try:
                client = redis.asyncio.Redis.from_url(
                    self.url,
                    # One quick retry for a pooled connection Redis dropped; outages are ours.
                    retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1),
                    **client_options(self.url),
                )
            except ValueError as exc:
                msg = f"budget URL {redacted_url(self.url)!r}: {one_line(exc)}"
                raise ConfigurationError(msg) from exc
            try:
                await client.ping()
            except redis.RedisError as exc:
                await client.aclose()
                raise _unavailable(self.url, exc) from exc
            self.attach(client)

    async def aclose(self) -> None:
        """Drop pending pause notices and close the connection (connect again to reuse)."""
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def set_pace(self, pace: float) -> None:
        """Reserve at ``pace`` (0 to 1) of the rates from now on (this process's reservations)."""
        rates = self.rates
        self.interval_ms = _MINUTE_MS / (rates.rpm * pace) if rates.rpm else 0.0
        self.tokens_per_ms = rates.tpm * pace / _MINUTE_MS if rates.tpm else 0.0

    def hold(self, seconds: float) -> None:
        """Share the hold as a pause: the limit a response said is spent is everyone's."""
        self.pause(seconds)

    def pause(self, seconds: float) -> None:
        """Send the pause to Redis in a task, for the other processes (a lost one is no error)."""
        task = asyncio.get_running_loop().create_task(self._publish_pause(seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def wait_for_pauses(self) -> None:
        """Wait until the pause notices sent so far reached Redis (or failed)."""
        for task in list(self._pending):
            await task

    async def _publish_pause(self, seconds: float) -> None:
        script = self._scripts.get("pause")
        if script is None:
            return
        try:
            self.round_trips += 1
            await script(keys=self.keys[2:3], args=[seconds * 1000, 0])
        except Exception as exc:  # a lost pause notice must not fail anything
            log.debug("pause not shared: %s", one_line(exc))

    async def reserve(self, tokens: float) -> str | None:
        """Reserve the earliest send time that fits every limit (one script); sleep until then.

        Returns:
            the request's booking in the window log (None: none), for :meth:`adjust`.
        """
        if not (self.interval_ms or self.tokens_per_ms):
            return None
        debt, self._debt = self._debt, 0.0  # usage a failed settle could not charge
        rates = self.rates
        args = [
            self.interval_ms,
            rates.request_room,
            tokens + debt if self.tokens_per_ms else 0,
            self.tokens_per_ms,
            rates.token_depth_s * 1000,
            *self._floors,
            0,  # now: Redis' clock
            _KEEP_MS,
            rates.window_requests or 0,
            rates.window_tokens or 0,
            (WINDOW_S + WINDOW_GUARD_S) * 1000,
            *self._late,
        ]
        loop = asyncio.get_running_loop()
        asked = loop.time()
        try:
            wait_us, requests_tat, tokens_tat, *rest = await self._run("reserve", self.keys, args)
        except BaseException:
            self._debt += debt
            raise
        answered = loop.time()
        self._floors = [
            max(self._floors[0], float(requests_tat)),
            max(self._floors[1], float(tokens_tat)),
        ]
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1e6)
        booking = _text(rest[0]) if rest else "0"
        # Late by the reply's trip at most, and by the sleep's overrun: the window
        # log moves the booking to when it went, with the next reservation.
        late_ms = (answered - asked + loop.time() - answered - max(wait_us, 0) / 1e6) * 1000
        self._late = [booking, max(0.0, late_ms)] if booking != "0" else [0, 0.0]
        return booking if booking != "0" else None

    async def adjust(self, difference: float, booking: object = None) -> None:
        """Charge (> 0) or refund (< 0) tokens in Redis, and in ``booking``'s window; try once."""
        script = self._scripts.get("adjust")
        if not difference or script is None:
            return
        try:
            # One try: a finished call must not wait for Redis. What it owes is
            # charged with this process' next reservation; a lost refund is only caution.
            self.round_trips += 1
            await script(
                keys=[self.keys[1], self.keys[5]],
                args=[
                    difference,
                    self.tokens_per_ms,
                    self.rates.token_depth_s * 1000,
                    0,
                    _KEEP_MS,
                    booking if isinstance(booking, str) else 0,
                ],
            )
        except Exception as exc:
            if difference > 0:
                self._debt += difference
            log.debug("usage not settled in Redis: %s", one_line(exc))

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
            retry=retry_if_exception(is_outage),
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
        cause = one_line(exc) if exc is not None else "no reply"
        log.warning(
            "shared budget at %s unreachable (%s); model calls wait and reconnect "
            "until it is back, never unlimited",
            redacted_url(self.url),
            cause,
        )

    def _outage_ended(self) -> None:
        if self._outage_since is None:
            return
        seconds = time.monotonic() - self._outage_since
        self._outage_since = None
        log.warning("shared budget at %s is back after %.1f s", redacted_url(self.url), seconds)


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
    :mod:`lc_async_pipelines.runner.limits._redis_scripts`.

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
        rpm, tpm, max_in_flight, default_max_tokens, cooldown_s, margin, tpm_charge: as
            :class:`~lc_async_pipelines.runner.RateBudget`; every process
            sharing ``key`` should pass the same limits: each books its calls
            at its own pace on the one schedule, so a slower one holds the
            others near its rate (:meth:`shared_use` tells who shares it).
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path.sock``. Its password is registered as a secret and
            never shown (``repr``, errors and logs print ``[redacted]``).
        key: the budget's name in Redis (:func:`budget_key` derives one from
            the endpoint, the model and the limits). Its keys are
            ``{key}:rpm``, ``{key}:tpm``, ``{key}:pause`` and ``{key}:latest``
            (braced: one Redis Cluster slot), kept 60 s past their last use,
            and ``{key}:runs``, the runs that checked in within 15 s.

    The limits are metered by a :class:`RedisBudgetStore` (:attr:`store`).

    Attributes:
        round_trips: scripts sent to Redis by this process (retries included).
        connected: True while connected to Redis.

    Raises:
        ConfigurationError: a limit out of range, a URL that is not Redis, an
            empty key, or redis-py missing (on connect).
    """

    url: str
    key: str

    def __post_init__(self) -> None:
        self._run_id = uuid.uuid4().hex[:12]  # this process in the budget's runs (shared_use)
        checked_url(self.url, "budget URL")
        if not isinstance(self.key, str) or not self.key.strip():
            msg = f"budget key must be a non-empty string, got {self.key!r}"
            raise ConfigurationError(msg)
        check_limits(self)
        if self.store is None:
            self.store = RedisBudgetStore(self.url, self.key, self.rates)
        super().__post_init__()

    @property
    def redis_store(self) -> RedisBudgetStore:
        """The store metering this budget in Redis."""
        if not isinstance(self.store, RedisBudgetStore):  # pragma: no cover - set by __post_init__
            msg = "a RedisRateBudget meters its limits in a RedisBudgetStore"
            raise TypeError(msg)
        return self.store

    @property
    def round_trips(self) -> int:
        """Scripts sent to Redis by this process (retries included)."""
        return self.redis_store.round_trips

    @property
    def connected(self) -> bool:
        """True while connected to Redis."""
        return self.redis_store.connected

    async def shared_use(self) -> SharedUse:
        """Check this process in on the budget; return how many runs draw from it, at what limits.

        A run that has not checked in for 15 s no longer counts: call this
        every few seconds while the run goes (the command line does, for its
        progress line). One script, on Redis' clock.

        Raises:
            BudgetUnavailable: never connected and Redis is down.
            redis.RedisError: Redis did not answer this time (try again later).
        """
        own = (self.rpm or None, self.tpm or None)
        member = f"{self._run_id}|{_limit_text(self.rpm)}|{_limit_text(self.tpm)}"
        members = await self.redis_store.presence(member)
        others: list[tuple[float | None, float | None]] = []
        for entry in members:
            parts = entry.split("|")
            if len(parts) != 3:
                continue
            limits = (_limit_value(parts[1]), _limit_value(parts[2]))
            if limits != own and limits not in others:
                others.append(limits)
        return SharedUse(runs=max(1, len(members)), limits=others)

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.init and f.name not in ("url", "key", "store")
        )
        return f"RedisRateBudget(url={redacted_url(self.url)!r}, key={self.key!r}, {limits})"

    def __reduce__(self) -> tuple[Any, ...]:
        settings = {
            f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name != "store"
        }
        return (_rebuild, (type(self), settings))


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
    tpm_charge: TpmCharge = "usage",
) -> RateBudget:
    """Return the budget a ``--budget`` value names, not yet connected.

    Args:
        url: None or empty for the in-memory :class:`RateBudget` (the default);
            ``redis://``, ``rediss://`` or ``unix://`` for a
            :class:`RedisRateBudget` shared through that Redis.
        key: the Redis budget's key (default: :func:`budget_key` of
            ``base_url``, ``model``, ``rpm`` and ``tpm``); ignored in memory.
        base_url: the model endpoint, for the default key.
        model: the model name, for the default key.
        rpm: requests per minute (None: unlimited), as :class:`RateBudget`.
        tpm: tokens per minute (None: unlimited), as :class:`RateBudget`.
        max_in_flight: model calls in flight at once, per process.
        default_max_tokens: a call's output charge when it sets no ``max_tokens``.
        cooldown_s: pause after a 429 without ``Retry-After``, seconds.
        margin: fraction of ``rpm`` and ``tpm`` left unused.
        tpm_charge: how the endpoint counts a call toward ``tpm``:
            ``"max_tokens"`` (OpenAI) or ``"usage"``, as :class:`RateBudget`.

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
        "tpm_charge": tpm_charge,
    }
    if not url:
        return RateBudget(**limits)
    checked_url(url, "--budget")
    return RedisRateBudget(url=url, key=key or budget_key(base_url, model, rpm, tpm), **limits)
