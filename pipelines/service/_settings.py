"""Settings of the service: limits, budget, auth token, deadlines; from the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import RateBudget, RetryPolicy, open_budget
from lc_async_pipelines.runner.limits.budget import TpmCharge

__all__ = ["LOOPBACK_HOSTS", "MIN_TOKEN_CHARS", "ServiceSettings"]

MIN_TOKEN_CHARS = 16
"""Shortest ``PIPELINES_API_TOKEN`` accepted: 16 random URL-safe characters are 96 bits."""

_ENV_NAMES = {
    "api_token": "PIPELINES_API_TOKEN",
    "rpm": "PIPELINES_RPM",
    "tpm": "PIPELINES_TPM",
    "budget_url": "PIPELINES_BUDGET_URL",
    "budget_key": "PIPELINES_BUDGET_KEY",
    "max_in_flight": "PIPELINES_MAX_IN_FLIGHT",
    "rate_margin": "PIPELINES_RATE_MARGIN",
    "max_body_bytes": "PIPELINES_MAX_BODY_BYTES",
    "request_timeout_s": "PIPELINES_REQUEST_TIMEOUT",
    "max_connections": "PIPELINES_MAX_CONNECTIONS",
    "max_pending_per_client": "PIPELINES_MAX_PENDING_PER_CLIENT",
    "keep_alive_s": "PIPELINES_KEEP_ALIVE",
    "header_timeout_s": "PIPELINES_HEADER_TIMEOUT",
    "body_timeout_s": "PIPELINES_BODY_TIMEOUT",
    "send_timeout_s": "PIPELINES_SEND_TIMEOUT",
    "shutdown_grace_s": "PIPELINES_SHUTDOWN_GRACE",
    "allow_open": "PIPELINES_ALLOW_OPEN",
    "allowed_hosts": "PIPELINES_ALLOWED_HOSTS",
}

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""Host header names a service without a token answers (plus ``allowed_hosts``)."""


class ServiceSettings(BaseModel):
    """Settings of the service, from the environment or ``.env`` (:meth:`from_env`).

    ``PIPELINES_API_TOKEN``: bearer token required on ``/v1/*`` when set; at
    least :data:`MIN_TOKEN_CHARS` characters (``python -c "import secrets;
    print(secrets.token_urlsafe(24))"`` makes one).
    ``PIPELINES_RPM`` / ``PIPELINES_TPM``: requests and tokens per minute shared
    by all requests, aiming ``PIPELINES_RATE_MARGIN`` (default 0.01) below them.
    ``PIPELINES_BUDGET_URL`` (``redis://HOST:PORT/DB``): share RPM, TPM and
    429 pauses with every replica and run using the same Redis and
    ``PIPELINES_BUDGET_KEY`` (default: derived from the endpoint, model and limits).
    ``PIPELINES_MAX_IN_FLIGHT``: model calls at once (default 4; per replica).
    ``PIPELINES_MAX_BODY_BYTES``: larger request bodies get 413 (default 1 MB).
    ``PIPELINES_REQUEST_TIMEOUT``: deadline of an invoke or a batch input,
    retries included, seconds (default 300).

    Slow or hostile clients (:func:`lc_async_pipelines.service.serve`):
    ``PIPELINES_MAX_CONNECTIONS``: connections at once; more are answered 503
    and closed (default 256). ``PIPELINES_MAX_PENDING_PER_CLIENT``: connections
    from one client address stalled for a second or more without a complete
    request head (and eight times that many waiting at all); more from that
    address are answered 503 and closed, and at
    ``PIPELINES_MAX_CONNECTIONS`` the longest-stalled connection is closed to
    make room, so a slowloris client cannot take every connection (default 8).
    ``PIPELINES_KEEP_ALIVE``: an idle keep-alive connection is closed after
    this many seconds (default 5).
    ``PIPELINES_HEADER_TIMEOUT``: a connection must deliver a complete request
    head within this many seconds of opening, or of its previous response, or
    it is closed (default 10). ``PIPELINES_BODY_TIMEOUT``: a request body must
    arrive within this many seconds of its head, else 408 (default 30).
    ``PIPELINES_SEND_TIMEOUT``: a stream's client that takes longer than this
    to accept one event (it stopped reading) is dropped (default 30).
    ``PIPELINES_SHUTDOWN_GRACE``: on SIGTERM, running invokes, streams and
    batches get this many seconds to finish; then a stream or batch gets an
    ``error`` event and an invoke a 503, both ``ServerShuttingDown`` (default 20).

    Exposure: ``PIPELINES_ALLOW_OPEN=1`` lets a service without a token bind
    beyond loopback. ``PIPELINES_ALLOWED_HOSTS`` (comma-separated): Host
    header names a service without a token answers besides
    :data:`LOOPBACK_HOSTS` (with a token, any host is answered).
    """

    model_config = ConfigDict(frozen=True)

    api_token: SecretStr | None = None
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    budget_url: SecretStr | None = None
    budget_key: str | None = Field(default=None, min_length=1, max_length=200)
    max_in_flight: int = Field(default=4, ge=1)
    rate_margin: float = Field(default=0.01, ge=0, lt=1)
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    retry: RetryPolicy = RetryPolicy(max_retries=2)
    max_connections: int = Field(default=256, ge=1)
    max_pending_per_client: int = Field(default=8, ge=1)
    keep_alive_s: int = Field(default=5, ge=1)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    send_timeout_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    allow_open: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse a token a client could guess (its text is never in the message)."""
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            msg = (
                f"must be at least {MIN_TOKEN_CHARS} characters "
                f"(got {len(value.get_secret_value())}); "
                'python -c "import secrets; print(secrets.token_urlsafe(24))" makes one'
            )
            raise ValueError(msg)
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """Accept ``"a.example, b.example"`` as well as a sequence of names."""
        if isinstance(value, str):
            return tuple(name for name in value.split(","))
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Lower-case the names, bracket IPv6 addresses, refuse malformed wildcards."""
        names = []
        for raw in value:
            name = raw.strip().lower()
            if not name:
                continue
            if "*" in name[1:] or (name.startswith("*") and name != "*" and name[:2] != "*."):
                msg = f"{name!r}: a wildcard must be like '*.example.com'"
                raise ValueError(msg)
            try:
                name = f"[{ipaddress.IPv6Address(name)}]"
            except ValueError:
                pass
            names.append(name)
        return tuple(names)

    @property
    def trusted_hosts(self) -> list[str]:
        """Host header names answered: any (``["*"]``) with a token, else loopback and allowed."""
        if self.api_token is not None:
            return ["*"]
        return list(dict.fromkeys([*LOOPBACK_HOSTS, *self.allowed_hosts]))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> ServiceSettings:
        """Read settings from ``environ`` (default ``os.environ``) over ``env_file``.

        Args:
            environ: the variables to read (default ``os.environ``).
            env_file: a dotenv file read first, if it exists (None: none).

        Returns:
            The settings; a variable that is unset or empty keeps its default.

        Raises:
            ConfigurationError: a variable's value is refused; one line naming
                the variable and the cause, never the value (it may be a secret).
        """
        values: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        try:
            return cls.model_validate(
                {k: values[v] for k, v in _ENV_NAMES.items() if values.get(v)}
            )
        except ValidationError as exc:
            error = exc.errors(include_input=False, include_url=False)[0]
            name = _ENV_NAMES.get(str(error["loc"][0]), str(error["loc"][0]))
            reason = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigurationError(f"{name} is not valid: {reason}") from None

    def new_budget(
        self,
        base_url: str | None = None,
        model: str | None = None,
        tpm_charge: TpmCharge = "usage",
    ) -> RateBudget:
        """Return a fresh budget with these limits, shared by every request, not yet connected.

        In memory (a :class:`RateBudget`), or with ``budget_url`` a
        :class:`~lc_async_pipelines.runner.RedisRateBudget` shared by every
        replica using that Redis and key (default key: from ``base_url`` and
        ``model``). ``tpm_charge``: how the endpoint counts TPM
        (:attr:`lc_async_pipelines.models.ModelSettings.tpm_charge`).
        """
        url = self.budget_url.get_secret_value() if self.budget_url is not None else None
        return open_budget(
            url,
            key=self.budget_key,
            base_url=base_url,
            model=model,
            rpm=self.rpm,
            tpm=self.tpm,
            max_in_flight=self.max_in_flight,
            margin=self.rate_margin,
            tpm_charge=tpm_charge,
        )
