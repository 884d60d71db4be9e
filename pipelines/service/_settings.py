"""Settings of the service: limits, budget, auth token, deadlines; from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lc_async_pipelines.runner import RateBudget, RetryPolicy

__all__ = ["ServiceSettings"]

_ENV_NAMES = {
    "api_token": "PIPELINES_API_TOKEN",
    "rpm": "PIPELINES_RPM",
    "tpm": "PIPELINES_TPM",
    "max_in_flight": "PIPELINES_MAX_IN_FLIGHT",
    "rate_margin": "PIPELINES_RATE_MARGIN",
    "max_body_bytes": "PIPELINES_MAX_BODY_BYTES",
    "request_timeout_s": "PIPELINES_REQUEST_TIMEOUT",
}


class ServiceSettings(BaseModel):
    """Settings of the service, from the environment or ``.env`` (:meth:`from_env`).

    ``PIPELINES_API_TOKEN``: bearer token required on ``/v1/*`` when set.
    ``PIPELINES_RPM`` / ``PIPELINES_TPM``: requests and tokens per minute shared
    by all requests, aiming ``PIPELINES_RATE_MARGIN`` (default 0.01) below them.
    ``PIPELINES_MAX_IN_FLIGHT``: model calls at once (default 4).
    ``PIPELINES_MAX_BODY_BYTES``: larger request bodies get 413 (default 1 MB).
    ``PIPELINES_REQUEST_TIMEOUT``: deadline of an invoke or a batch input,
    retries included, seconds (default 300).
    """

    model_config = ConfigDict(frozen=True)

    api_token: SecretStr | None = None
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_in_flight: int = Field(default=4, ge=1)
    rate_margin: float = Field(default=0.01, ge=0, lt=1)
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    retry: RetryPolicy = RetryPolicy(max_retries=2)

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
        """
        values: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls.model_validate({k: values[v] for k, v in _ENV_NAMES.items() if values.get(v)})

    def new_budget(self) -> RateBudget:
        """Return a fresh :class:`RateBudget` with these limits, shared by every request."""
        return RateBudget(
            rpm=self.rpm,
            tpm=self.tpm,
            max_in_flight=self.max_in_flight,
            margin=self.rate_margin,
        )
