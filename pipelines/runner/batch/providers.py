"""The batch providers that ship with the package, and which one batches a chat model."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.batch._openai import OpenAIBatches
from lc_async_pipelines.runner.batch.options import BatchOptions
from lc_async_pipelines.runner.batch.provider import BatchProvider

__all__ = ["provider_for"]


def provider_for(chat_model: BaseChatModel, options: BatchOptions) -> BatchProvider:
    """Return the batch provider of ``chat_model``: OpenAI for ``ChatOpenAI``, Anthropic's.

    Args:
        chat_model: the run's bare chat model.
        options: the session's options (request timeout, OpenAI's completion window).

    Raises:
        ConfigurationError: no provider here batches this model (the message names its class).
    """
    if OpenAIBatches.accepts(chat_model):
        return OpenAIBatches(chat_model, options.request_timeout_s, options.completion_window)
    try:  # the [anthropic] extra
        from lc_async_pipelines.runner.batch._anthropic import AnthropicBatches
    except ImportError:
        pass
    else:
        if AnthropicBatches.accepts(chat_model):
            return AnthropicBatches(chat_model, options.request_timeout_s)
    msg = (
        "the Batch API needs an OpenAI-compatible chat model (ChatOpenAI) or ChatAnthropic, "
        f"got {type(chat_model).__name__}"
    )
    raise ConfigurationError(msg)
