"""Type aliases shared by the pipeline factories."""

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

# What a factory accepts as its model: a chat model, or one wrapped by
# ``.with_retry()``, ``.bind(...)`` or ``.with_fallbacks(...)``.
ChatModel = Runnable[LanguageModelInput, BaseMessage]
