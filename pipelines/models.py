"""Model settings from the environment or ``.env``, and the chat model built from them.

Which model a run uses, in order:

1. ``--embedded`` (``ModelSettings(embedded=True)``): the embedded model, whatever else is set.
2. ``-m/--model`` or ``PIPELINES_MODEL`` of the form ``provider:model`` with a
   provider LangChain's ``init_chat_model`` knows (``anthropic:claude-...``,
   ``ollama:llama3.1``, ...): that provider's chat model, with its own
   package and credentials (https://python.langchain.com/api_reference/langchain/chat_models/langchain.chat_models.base.init_chat_model.html).
   For ``anthropic:`` the key and endpoint are read here as for OpenAI, from
   ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` (environment or
   ``.env``), so the start-up line names them and the key is scrubbed.
3. ``OPENAI_BASE_URL`` and/or ``OPENAI_API_KEY``: any OpenAI-compatible endpoint
   (OpenAI, vLLM, Ollama's ``/v1``, a LiteLLM proxy, FastChat) through
   ``langchain_openai.ChatOpenAI``. With a base URL and no model name, the
   endpoint's ``GET /models`` is asked: one model is used, several are an
   error that lists them (nothing is guessed). With only a key, OpenAI's
   ``gpt-4o-mini``.
4. Nothing set: the embedded model (:mod:`lc_async_pipelines.embedded`).

:func:`describe` says in one line which model and endpoint that is, and where
the key came from, so a key exported in the shell never silently means a paid
endpoint: the command line and the service print it once at start.

Environment variables (a ``.env`` file in the working directory is read too;
the process environment wins):

==========================  ==============================================  ==============
name                        meaning                                         default
==========================  ==============================================  ==============
OPENAI_API_KEY              key, held as ``SecretStr``                      none
OPENAI_BASE_URL             endpoint root, e.g. ``http://host:8000/v1``     none
ANTHROPIC_API_KEY           key of an ``anthropic:`` model                  none
ANTHROPIC_BASE_URL          endpoint root of an ``anthropic:`` model        Anthropic's
PIPELINES_EMBEDDED          ``1``: use the embedded model                   0
PIPELINES_EMBEDDED_URL      a running ``pipelines serve-model`` to share    none
PIPELINES_EMBEDDED_THREADS  decoding threads of an embedded server          llama.cpp's
PIPELINES_MODEL             model name, or ``provider:model``               see above
PIPELINES_TEMPERATURE       sampling temperature                            0.2
PIPELINES_MAX_TOKENS        cap on generated tokens per call                512
PIPELINES_TIMEOUT           per-request timeout, seconds                    120
PIPELINES_EXTRA_BODY        JSON object merged into each request body       none
PIPELINES_CONTEXT_TOKENS    the model's context window (input cap), tokens  embedded: 4096
==========================  ==============================================  ==============
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

if TYPE_CHECKING:
    import httpx

from lc_async_pipelines._scrub import register_secret, register_url_secrets, scrub_url
from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_SAMPLING, EmbeddedModelServer
from lc_async_pipelines.errors import ConfigurationError

__all__ = [
    "DEFAULT_OPENAI_MODEL",
    "PROVIDERS",
    "ModelSettings",
    "chat_model_session",
    "describe",
    "make_chat_model",
    "resolve_model",
]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
# Each llama-server slot's context (EmbeddedModelServer's ctx_per_slot).
EMBEDDED_CONTEXT_TOKENS = 4096
OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"

# The providers of langchain's init_chat_model (langchain 1.4). A prefix not in
# this set is part of a model name ("llama3.1:8b" on Ollama's OpenAI API).
PROVIDERS = frozenset(
    {
        "anthropic", "anthropic_bedrock", "azure_ai", "azure_openai", "baseten", "bedrock",
        "bedrock_converse", "cohere", "deepseek", "fireworks", "google_anthropic_vertex",
        "google_genai", "google_vertexai", "groq", "huggingface", "ibm", "litellm", "mistralai",
        "nvidia", "ollama", "openai", "openrouter", "perplexity", "together", "upstage", "xai",
    }
)  # fmt: skip


class ModelSettings(BaseModel):
    """Where and how to call the chat model (see the module docstring for the order).

    ``api_key`` is a ``SecretStr``: its value never appears in ``repr``, logs or records.

    Attributes:
        api_key: OpenAI-compatible endpoint key (of an ``anthropic:`` model: Anthropic's).
        base_url: OpenAI-compatible endpoint root (``.../v1``; of an
            ``anthropic:`` model: Anthropic's, without ``/v1``).
        embedded: use the embedded model whatever else is set.
        embedded_url: a running ``pipelines serve-model`` to share.
        embedded_threads: CPU threads an embedded server started here decodes
            with (``llama-server --threads``; None: llama.cpp's choice). On a
            machine shared with other work, 1 per server can be much faster
            than the default, which assumes the cores are free.
        model: model name, or ``provider:model`` for ``init_chat_model``.
        temperature: sampling temperature.
        max_tokens: cap on generated tokens per call (None: the server's).
        timeout: per-request timeout, seconds.
        extra_body: JSON merged into each OpenAI-compatible request body.
        context_tokens: the model's context window, tokens (the embedded
            model's is known: :data:`EMBEDDED_CONTEXT_TOKENS`); inputs estimated
            larger become error records instead of calls.
        key_source: where ``api_key`` came from (``"environment"`` or ``".env"``),
            for :func:`describe`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    base_url: str | None = None
    embedded: bool = False
    embedded_url: str | None = None
    embedded_threads: int | None = Field(default=None, gt=0)
    model: str | None = None
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int | None = Field(default=512, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="seconds per request")
    extra_body: dict[str, Any] | None = None
    context_tokens: int | None = Field(default=None, gt=0)
    key_source: str | None = None

    def model_post_init(self, context: Any, /) -> None:
        """Register the key and the base URL's password and query credentials as secrets.

        Scrubbed from every error text that leaves, however the settings were made.
        """
        register_secret(self.api_key)
        register_url_secrets(self.base_url)

    @property
    def provider(self) -> str | None:
        """The ``init_chat_model`` provider of ``model`` (``"anthropic"``), or None."""
        if self.model is None or ":" not in self.model:
            return None
        prefix = self.model.split(":", 1)[0]
        return prefix if prefix in PROVIDERS else None

    @property
    def model_name(self) -> str | None:
        """``model`` without its provider prefix."""
        if self.provider is None or self.model is None:
            return self.model
        return self.model.split(":", 1)[1]

    @property
    def context_window(self) -> int | None:
        """The context window in tokens: set, or known for the embedded model, else None."""
        if self.context_tokens is not None:
            return self.context_tokens
        return EMBEDDED_CONTEXT_TOKENS if self.uses_embedded else None

    @property
    def tpm_charge(self) -> Literal["max_tokens", "usage"]:
        """How the endpoint counts a call toward its tokens-per-minute limit.

        ``"max_tokens"`` for OpenAI's own API and Azure OpenAI, which count a
        request's ``max_tokens`` when they admit it
        (https://platform.openai.com/docs/guides/rate-limits); ``"usage"``
        for the rest (Anthropic settles to real usage,
        https://docs.anthropic.com/en/api/rate-limits; a self-hosted
        endpoint has no TPM of its own). See
        :class:`~lc_async_pipelines.runner.RateBudget`'s ``tpm_charge``.
        """
        if self.uses_embedded or self.provider not in (None, "openai", "azure_openai"):
            return "usage"
        host = urlsplit(self.base_url or OPENAI_URL).hostname or ""
        openai_hosted = host == "api.openai.com" or host.endswith(".openai.azure.com")
        return "max_tokens" if openai_hosted or self.provider == "azure_openai" else "usage"

    @property
    def known_provider(self) -> bool:
        """True when a provider that bills by the token serves the calls.

        A ``provider:model`` of LangChain's, or OpenAI's or Azure OpenAI's own
        API; False for the embedded model and any other OpenAI-compatible
        endpoint (self-hosted: vLLM, llama.cpp, Ollama, a mock), whose models
        have no price to look up, so a run does not warn that they have none.
        """
        if self.uses_embedded:
            return False
        if self.provider is not None:
            return True
        host = urlsplit(self.base_url or OPENAI_URL).hostname or ""
        return host == "api.openai.com" or host.endswith(".openai.azure.com")

    @property
    def uses_embedded(self) -> bool:
        """True when the embedded model serves the calls: forced, or nothing else configured."""
        if self.embedded:
            return True
        openai_like = self.provider in (None, "openai")
        return openai_like and self.api_key is None and self.base_url is None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | Path | None = ".env",
        **overrides: Any,
    ) -> ModelSettings:
        """Read settings from ``environ`` (default ``os.environ``) over ``env_file``.

        Args:
            environ: the environment (default ``os.environ``).
            env_file: a dotenv file read under the environment (None: none).
            **overrides: fields set by the caller (e.g. ``model`` from ``-m``),
                over both; None values are ignored.

        Raises:
            ConfigurationError: a value does not parse (the message names the variable).
        """
        from_file: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            try:
                from_file = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
            except (OSError, UnicodeDecodeError) as exc:
                msg = f"{env_file}: cannot be read as a .env file ({type(exc).__name__})"
                raise ConfigurationError(msg) from None
        environment = dict(os.environ if environ is None else environ)
        values = {**from_file, **environment}

        def get(name: str) -> str | None:
            return values.get(name) or None

        names = {
            "api_key": "OPENAI_API_KEY",
            "base_url": "OPENAI_BASE_URL",
            "embedded": "PIPELINES_EMBEDDED",
            "embedded_url": "PIPELINES_EMBEDDED_URL",
            "embedded_threads": "PIPELINES_EMBEDDED_THREADS",
            "model": "PIPELINES_MODEL",
            "temperature": "PIPELINES_TEMPERATURE",
            "max_tokens": "PIPELINES_MAX_TOKENS",
            "timeout": "PIPELINES_TIMEOUT",
            "extra_body": "PIPELINES_EXTRA_BODY",
            "context_tokens": "PIPELINES_CONTEXT_TOKENS",
        }
        model = overrides.get("model") or get("PIPELINES_MODEL")
        if isinstance(model, str) and model.startswith("anthropic:"):
            names.update(api_key="ANTHROPIC_API_KEY", base_url="ANTHROPIC_BASE_URL")
        fields: dict[str, Any] = {k: get(v) for k, v in names.items()}
        if fields["extra_body"]:
            try:
                fields["extra_body"] = json.loads(fields["extra_body"])
            except json.JSONDecodeError as exc:
                msg = f"PIPELINES_EXTRA_BODY is not JSON: {exc}"
                raise ConfigurationError(msg) from exc
        if fields["api_key"]:
            fields["key_source"] = "environment" if environment.get(names["api_key"]) else ".env"
        fields.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls(**{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else "?"
            msg = f"{names.get(field, field)}: {error['msg']}"
            raise ConfigurationError(msg) from None
        return settings


def resolve_model(
    settings: ModelSettings, *, timeout: float = 10.0, client: httpx.Client | None = None
) -> ModelSettings:
    """Return ``settings`` with a model name, asking the endpoint when none is set.

    With a base URL and no model, ``GET {base_url}/models`` (the OpenAI models
    API, which vLLM, Ollama, LiteLLM and llama.cpp also serve) must list
    exactly one model. With only a key, :data:`DEFAULT_OPENAI_MODEL`.

    Args:
        settings: the settings to complete.
        timeout: seconds for the models request.
        client: the HTTP client (tests inject one with ``httpx.MockTransport``).

    Raises:
        ConfigurationError: the endpoint cannot be asked, lists no model, or
            lists several (the message names them).
    """
    if settings.model or settings.uses_embedded or settings.provider:
        return settings
    if settings.base_url is None:
        return settings.model_copy(update={"model": DEFAULT_OPENAI_MODEL})
    import httpx  # only to ask the endpoint: not in the start-up of every run

    url = settings.base_url.rstrip("/") + "/models"
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    try:
        if client is None:
            response = httpx.get(url, headers=headers, timeout=timeout)
        else:
            response = client.get(url, headers=headers, timeout=timeout)
        response.raise_for_status()
        listed = [str(m["id"]) for m in response.json().get("data", []) if "id" in m]
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        shown = scrub_url(settings.base_url)
        msg = f"cannot reach {shown} ({type(exc).__name__}); is the endpoint running?"
        raise ConfigurationError(msg) from None
    except (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = (
            f"no model set and {scrub_url(url)} did not list its models ({type(exc).__name__}); "
            "set PIPELINES_MODEL or -m"
        )
        raise ConfigurationError(msg) from None
    if len(listed) != 1:
        shown = ", ".join(listed[:10]) + (" ..." if len(listed) > 10 else "")
        msg = (
            f"no model set and {scrub_url(url)} serves {len(listed)} models ({shown or 'none'}); "
            "choose one with PIPELINES_MODEL or -m"
        )
        raise ConfigurationError(msg)
    return settings.model_copy(update={"model": listed[0]})


def describe(settings: ModelSettings, base_url: str | None = None) -> str:
    """Return one line naming the model, the endpoint and where the key came from.

    Never contains the key itself.
    """
    if settings.uses_embedded:
        where = base_url or settings.embedded_url or "a local llama-server"
        return f"model {EMBEDDED_MODEL_NAME} (embedded) at {where}"
    if settings.provider == "anthropic":
        endpoint = scrub_url(base_url or settings.base_url or ANTHROPIC_URL)
        key = f"key from {settings.key_source}" if settings.api_key else "no key"
        return f"model {settings.model_name} from provider anthropic at {endpoint} ({key})"
    if settings.provider not in (None, "openai"):
        return (
            f"model {settings.model_name} from provider {settings.provider} (its own credentials)"
        )
    endpoint = scrub_url(base_url or settings.base_url or OPENAI_URL)  # a password, a ?key=
    key = f"key from {settings.key_source}" if settings.api_key else "no key"
    return f"model {settings.model_name or DEFAULT_OPENAI_MODEL} at {endpoint} ({key})"


def make_chat_model(
    settings: ModelSettings,
    *,
    base_url: str | None = None,
    max_retries: int = 0,
    **overrides: Any,
) -> BaseChatModel:
    """Build the chat model for ``settings``.

    Args:
        settings: where and how to call; the model name should be resolved
            (:func:`resolve_model`); with a base URL and none, this asks the endpoint.
        base_url: overrides ``settings.base_url`` (used for the embedded server).
        max_retries: the provider SDK's own retries. 0 by default so that retries
            happen once, in ``.with_retry`` or the runner; the SDK's would stack
            on top and hide attempts.
        **overrides: any other field of the chat model class.

    Returns:
        For OpenAI-compatible endpoints and the embedded model, a
        ``ChatOpenAI`` that sends one plain request per call and streams only
        when asked (``astream``, a streaming handler), reporting token usage
        in the stream too, and the response headers in
        ``response_metadata["headers"]`` (the rate-limit headers feed the
        budget); for another provider, its chat model from ``init_chat_model``.
        ``streaming`` is left unset, not False: an explicit False turns
        ``astream`` into one chunk (``BaseChatModel._streaming_disabled``).

    Raises:
        ConfigurationError: the provider's package is not installed, or no model name.
    """
    from langchain.chat_models import init_chat_model  # about 1 s: only when a model is built

    common: dict[str, Any] = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "timeout": settings.timeout,
        "max_retries": max_retries,
    }
    if settings.provider not in (None, "openai") and not settings.embedded:
        if settings.provider == "anthropic":  # else ChatAnthropic reads the environment only
            given = {"api_key": settings.api_key, "base_url": settings.base_url}
            common.update({k: v for k, v in given.items() if v})
        try:
            spec = str(settings.model)
            provided: BaseChatModel = init_chat_model(spec, **{**common, **overrides})
            return provided
        except ImportError as exc:
            raise ConfigurationError(f"model {settings.model!r}: {exc}") from None
    embedded = settings.uses_embedded
    if not embedded and base_url is None:
        settings = resolve_model(settings)
    extra_body = dict(EMBEDDED_SAMPLING) if embedded else {}
    extra_body.update(settings.extra_body or {})
    name = EMBEDDED_MODEL_NAME if embedded else settings.model_name or DEFAULT_OPENAI_MODEL
    kwargs: dict[str, Any] = {
        **common,
        "api_key": (None if embedded else settings.api_key) or SecretStr("not-needed"),
        "base_url": base_url or (None if embedded else settings.base_url),
        "stream_usage": True,
        "include_response_headers": True,
    }
    if extra_body:
        kwargs["extra_body"] = extra_body
    kwargs.update(overrides)
    model: BaseChatModel = init_chat_model(name, model_provider="openai", **kwargs)
    return model


@asynccontextmanager
async def chat_model_session(
    settings: ModelSettings | None = None,
    *,
    parallel: int = 4,
    **overrides: Any,
) -> AsyncIterator[BaseChatModel]:
    """Yield a chat model for ``settings``, starting the embedded server if needed.

    With an endpoint configured, this only builds the client (asking the
    endpoint for its model when none is named). With ``PIPELINES_EMBEDDED_URL``
    it shares a running ``pipelines serve-model``. Otherwise it starts
    ``llama-server`` on a free loopback port with ``parallel`` slots and
    ``settings.embedded_threads`` threads, and stops it on exit.

    Raises:
        ConfigurationError: the model cannot be resolved.
        EmbeddedModelError: the embedded server cannot start.
    """
    settings = settings or ModelSettings.from_env()
    async with _own_http_client(settings, overrides):
        if not settings.uses_embedded:
            settings = await asyncio.to_thread(resolve_model, settings)
            yield make_chat_model(settings, **overrides)
            return
        if settings.embedded_url:
            yield make_chat_model(settings, base_url=settings.embedded_url, **overrides)
            return
        server = EmbeddedModelServer(parallel=parallel, threads=settings.embedded_threads)
        async with server:
            yield make_chat_model(settings, base_url=server.base_url, **overrides)


@asynccontextmanager
async def _own_http_client(
    settings: ModelSettings, overrides: dict[str, Any]
) -> AsyncIterator[None]:
    """Give an OpenAI-compatible client an HTTP client of this session's own, closed at its end.

    langchain-openai otherwise shares one async client per base URL for the
    whole process, and a connection it pooled on an event loop that has since
    closed fails the next session's calls ("Event loop is closed": a second
    ``asyncio.run`` in a script or a notebook, against the same endpoint).
    """
    if "http_async_client" in overrides or settings.provider not in (None, "openai"):
        yield
        return
    import openai  # with the model: only when one is built

    client = openai.DefaultAsyncHttpxClient()
    overrides["http_async_client"] = client
    try:
        yield
    finally:
        await client.aclose()
