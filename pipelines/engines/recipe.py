"""What every worker of a scaled-out run needs to build the same chain: :class:`ChainRecipe`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lc_async_pipelines._scrub import register_secret
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.checks import check_number
from lc_async_pipelines.runner.redis_client import REDIS_SCHEMES
from lc_async_pipelines.runner.retry import RetryPolicy

if TYPE_CHECKING:
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import PipelineSpec

__all__ = ["ChainRecipe"]


@dataclass(frozen=True)
class ChainRecipe:
    """Everything a worker needs to build the same chain: picklable, no secret in ``repr``.

    Attributes:
        spec: the pipeline (a registered one, ``module:attr``, or a prompt
            pipeline); its factory must be importable, or picklable by
            cloudpickle, on every worker.
        options: the factory's keyword arguments (``{"max_words": 80}``).
        settings: the model settings; the key is a ``SecretStr``.
        budget_url: a Redis URL (``redis://HOST:PORT/DB``) for one budget shared
            by every worker; None: each worker has its own in-memory budget
            holding ``1/workers`` of ``rpm`` and ``tpm``.
        budget_key: the shared budget's key (None: derived from endpoint, model and limits).
        rpm: requests per minute, the whole run (all workers).
        tpm: tokens per minute, the whole run.
        cache: a Redis URL for the shared LLM cache, or None. An SQLite path is
            refused: one file cannot be shared by processes on many machines.
        cache_ttl_s: time-to-live of each cache entry, seconds (None: no expiry).
        concurrency: items in flight on each worker (its window).
        max_in_flight: model calls in flight on each worker, nested ones
            included (None: ``concurrency``).
        fallback_model: another model on the same endpoint, tried when a call
            to the main one fails (``model_session(fallback_model=...)``).
        retry: retries of each model call (``model_session(retry=...)``).

    Raises:
        ConfigurationError: a value out of range, an SQLite cache, or a
            budget or cache URL that is not ``redis://``, ``rediss://`` or ``unix://``.
    """

    spec: PipelineSpec
    options: dict[str, Any]
    settings: ModelSettings
    # Out of repr: a Redis URL may carry a password (redis://:secret@host).
    budget_url: str | None = field(default=None, repr=False)
    budget_key: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    cache: str | None = field(default=None, repr=False)
    cache_ttl_s: float | None = None
    concurrency: int = 8
    max_in_flight: int | None = None
    fallback_model: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        check_number("concurrency", self.concurrency, minimum=1, whole=True)
        check_number("rpm", self.rpm, minimum=0, strict=True)
        check_number("tpm", self.tpm, minimum=0, strict=True)
        check_number("cache_ttl_s", self.cache_ttl_s, minimum=0, strict=True)
        check_number("max_in_flight", self.max_in_flight, minimum=1, whole=True)
        if self.cache is not None and urlsplit(str(self.cache)).scheme not in REDIS_SCHEMES:
            msg = (
                f"cache {self.cache}: workers on Ray need a shared cache, redis://HOST:PORT/DB; "
                "one SQLite file cannot be shared by processes on many machines"
            )
            raise ConfigurationError(msg)
        if self.budget_url is not None and urlsplit(self.budget_url).scheme not in REDIS_SCHEMES:
            msg = "budget_url: expected redis://HOST:PORT/DB, rediss:// or unix://"
            raise ConfigurationError(msg)
        if self.cache_ttl_s is not None and self.cache is None:
            msg = "cache_ttl_s goes with a Redis cache"
            raise ConfigurationError(msg)
        if self.budget_key is not None and self.budget_url is None:
            msg = "budget_key goes with budget_url (a shared budget)"
            raise ConfigurationError(msg)
        for url in (self.budget_url, self.cache):
            if url is not None:
                register_secret(urlsplit(url).password)  # scrubbed from error texts
