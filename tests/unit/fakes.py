"""Fake chat models for unit tests: no network."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable


def fake_llm(replies: Iterable[str]) -> Runnable:
    """A model that streams the given replies in turn.

    ``stream=True`` makes ``ainvoke`` take the streaming path, as
    ``ChatOpenAI(streaming=True)`` does; only then does on_llm_new_token fire.
    """
    model = GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))
    return model.bind(stream=True)


def cycling_llm(reply: str) -> Runnable:
    model = GenericFakeChatModel(messages=(AIMessage(content=reply) for _ in itertools.count()))
    return model.bind(stream=True)
