"""Model settings from the environment or ``.env``, and the chat model built from them.

Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, a LiteLLM proxy, FastChat)
works through ``langchain_openai.ChatOpenAI``. With neither ``OPENAI_API_KEY``
nor ``OPENAI_BASE_URL`` set, :func:`chat_model_session` starts the embedded
model (:mod:`pipelines.embedded`) and points the client at it.

Environment variables (a ``.env`` file in the working directory is read too;
the process environment wins):

========================  ==============================================  =========
name                      meaning                                         default
========================  ==============================================  =========
OPENAI_API_KEY            key, held as ``SecretStr``                       none
OPENAI_BASE_URL           endpoint root, e.g. ``http://host:8000/v1``      none
PIPELINES_EMBEDDED_URL    a running ``pipelines serve-model`` to share     none
PIPELINES_MODEL           model name                                       see below
PIPELINES_TEMPERATURE     sampling temperature                             0.2
PIPELINES_MAX_TOKENS      cap on generated tokens per call                 512
PIPELINES_TIMEOUT         per-request timeout, seconds                     120
PIPELINES_EXTRA_BODY      JSON object merged into each request body        none
========================  ==============================================  =========
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_SAMPLING, EmbeddedModelServer

__all__ = ["ModelSettings", "chat_model_session", "make_chat_model"]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class ModelSettings(BaseModel):
    """Where and how to call the chat model.

    ``api_key`` is a ``SecretStr``: its value never appears in ``repr``, logs or records.
    """

    model_config = ConfigDict(frozen=True)

    api_key: SecretStr | None = None
    base_url: str | None = None
    embedded_url: str | None = None
    model: str | None = None
    temperature: float = 0.2
    max_tokens: int | None = 512
    timeout: float = Field(default=120.0, gt=0, description="seconds per request")
    extra_body: dict[str, Any] | None = None

    @property
    def uses_embedded(self) -> bool:
        """True when no endpoint is configured, so the embedded model serves the calls."""
        return self.api_key is None and self.base_url is None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> ModelSettings:
        """Read settings from ``environ`` (default ``os.environ``) over ``env_file``.

        Raises:
            ValueError: a number or ``PIPELINES_EXTRA_BODY`` does not parse.
        """
        values: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            return values.get(name) or None

        fields: dict[str, Any] = {
            "api_key": get("OPENAI_API_KEY"),
            "base_url": get("OPENAI_BASE_URL"),
            "embedded_url": get("PIPELINES_EMBEDDED_URL"),
            "model": get("PIPELINES_MODEL"),
            "temperature": get("PIPELINES_TEMPERATURE"),
            "max_tokens": get("PIPELINES_MAX_TOKENS"),
            "timeout": get("PIPELINES_TIMEOUT"),
        }
        extra = get("PIPELINES_EXTRA_BODY")
        if extra:
            try:
                fields["extra_body"] = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise ValueError(f"PIPELINES_EXTRA_BODY is not JSON: {exc}") from exc
        return cls(**{k: v for k, v in fields.items() if v is not None})


def make_chat_model(
    settings: ModelSettings,
    *,
    base_url: str | None = None,
    max_retries: int = 0,
    **overrides: Any,
) -> ChatOpenAI:
    """Build the ``ChatOpenAI`` client for ``settings``.

    Args:
        settings: where and how to call.
        base_url: overrides ``settings.base_url`` (used for the embedded server).
        max_retries: the OpenAI SDK's own retries. 0 by default so that retries
            happen once, in ``.with_retry`` or the runner; the SDK's would stack
            on top and hide attempts.
        **overrides: any other ``ChatOpenAI`` field.

    Returns:
        A streaming client (``on_llm_new_token`` fires only when the model
        streams) that reports token usage in the stream.
    """
    embedded = base_url is not None and settings.uses_embedded
    extra_body = dict(EMBEDDED_SAMPLING) if embedded else {}
    extra_body.update(settings.extra_body or {})
    kwargs: dict[str, Any] = {
        "model": settings.model or (EMBEDDED_MODEL_NAME if embedded else DEFAULT_OPENAI_MODEL),
        "api_key": settings.api_key or SecretStr("not-needed"),
        "base_url": base_url or settings.base_url,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "timeout": settings.timeout,
        "max_retries": max_retries,
        "streaming": True,
        "stream_usage": True,
    }
    if extra_body:
        kwargs["extra_body"] = extra_body
    kwargs.update(overrides)
    return ChatOpenAI(**kwargs)


@asynccontextmanager
async def chat_model_session(
    settings: ModelSettings | None = None,
    *,
    parallel: int = 4,
    **overrides: Any,
) -> AsyncIterator[ChatOpenAI]:
    """Yield a chat model for ``settings``, starting the embedded server if needed.

    With an endpoint configured, this only builds the client. With
    ``PIPELINES_EMBEDDED_URL`` it shares a running ``pipelines serve-model``.
    Otherwise it starts ``llama-server`` on a free loopback port with
    ``parallel`` slots and stops it on exit.

    Raises:
        EmbeddedModelError: the embedded server cannot start.
    """
    settings = settings or ModelSettings.from_env()
    if not settings.uses_embedded:
        yield make_chat_model(settings, **overrides)
        return
    if settings.embedded_url:
        yield make_chat_model(settings, base_url=settings.embedded_url, **overrides)
        return
    async with EmbeddedModelServer(parallel=parallel) as server:
        yield make_chat_model(settings, base_url=server.base_url, **overrides)
