"""Fake chat models for unit tests: no network."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable

from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable


def fake_llm(replies: Iterable[str]) -> Runnable:
    """A model that streams the given replies in turn.

    ``stream=True`` makes ``ainvoke`` take the streaming path, as
    ``ChatOpenAI(streaming=True)`` does; only then does on_llm_new_token fire.
    """
    model = GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))
    return model.bind(stream=True)


def cycling_llm(reply: str) -> Runnable:
    # itertools.repeat, not a generator: concurrent map calls run the fake in threads
    model = GenericFakeChatModel(messages=itertools.repeat(AIMessage(content=reply)))
    return model.bind(stream=True)


class FnChatModel(BaseChatModel):
    """A chat model whose reply comes from ``fn(messages, **kwargs)``: an async function.

    For tests that count calls, raise errors or hold calls open; being a real
    ``BaseChatModel`` it has the cache and ``rate_limiter`` slots.
    """

    fn: Callable[..., Awaitable[AIMessage]]

    @property
    def _llm_type(self) -> str:
        return "fn-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=await self.fn(messages, **kwargs))])


class ConcurrencyProbe:
    """A model function that answers ``reply`` after ``delay_s`` and records the peak of calls at once."""

    def __init__(self, reply: str = "Done.", delay_s: float = 0.001) -> None:
        self.reply, self.delay_s = reply, delay_s
        self.live = self.peak = 0

    async def __call__(self, messages, **kwargs) -> AIMessage:
        self.live += 1
        self.peak = max(self.peak, self.live)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.live -= 1
        return AIMessage(content=self.reply)


def replies(*texts):
    """A model answering ``texts`` in turn, and the messages of each call."""
    seen = []
    answers = iter(texts)

    async def fn(messages, **_):
        seen.append(messages)
        return AIMessage(content=next(answers), response_metadata={"finish_reason": "stop"})

    return FnChatModel(fn=fn), seen
