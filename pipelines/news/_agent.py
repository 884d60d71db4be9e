"""The news agent: a tool-calling model runs the news tools in a loop, then gives the analysis.

The loop is LangChain's tool-calling loop
(https://python.langchain.com/docs/how_to/tool_results_pass_to_model/): the
model, bound to the tools, answers with tool calls; each call's
``ToolMessage`` goes back into the conversation (the calls of one turn run
concurrently); when the model answers without tool calls, the analysis is
asked for with structured output over the whole conversation. It is written
out rather than taken from ``langchain.agents.create_agent``, which needs a
bare ``BaseChatModel``: the model here is the session's, behind the run's
budget and per-call retries, and stays so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool

from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError, OutputValidationError
from lc_async_pipelines.news._analysis import JSON_MAX_TOKENS, NewsAnalysis, cut_to_words
from lc_async_pipelines.news._tools import (
    FETCH_ARTICLE,
    NewsReport,
    _by_name,
    report_from,
    tool_call,
)
from lc_async_pipelines.prompt_chain import structured_output
from lc_async_pipelines.prompts.news import NEWS_AGENT_PROMPT


def build_news_agent(
    llm: ChatModel, tools: Sequence[BaseTool], *, max_words: int = 40, max_steps: int = 4
) -> Runnable[str, NewsReport]:
    """Build the news agent: URL in, :class:`NewsReport` out, for a tool-calling model.

    Args:
        llm: a chat model with ``bind_tools`` (hosted models; the embedded one
            cannot call tools: use :func:`build_news_tool_chain`).
        tools: :func:`news_tools`, plus any others the model may call.
        max_words: the summary's length in words.
        max_steps: model turns with tool calls before the analysis is asked for.

    Returns:
        ``Runnable[str, NewsReport]``. When the model never called
        ``fetch_article``, the tool is run once before the analysis, so the
        analysis always reads the article itself.

    Raises:
        ConfigurationError: ``llm`` cannot bind tools; no ``fetch_article`` tool.
        OutputValidationError: on invocation, the model called a tool it was not given.
            A call about another URL than the article's is refused: the model
            gets an error ``ToolMessage`` and the page is not fetched.
        FetchError: on invocation, a tool could not fetch the page.
    """
    found = _by_name(tools)
    with_tools = _bind_tools(llm, found)
    if max_steps < 1:
        raise ConfigurationError(f"max_steps must be at least 1, got {max_steps}")
    answer = structured_output(llm, NewsAnalysis, max_tokens=JSON_MAX_TOKENS)

    async def run(url: str, config: RunnableConfig) -> NewsReport:
        url = url.strip()
        messages: list[BaseMessage] = NEWS_AGENT_PROMPT.format_messages(
            url=url, max_words=max_words
        )
        results: list[ToolMessage] = []
        for _ in range(max_steps):
            reply = await with_tools.ainvoke(messages, config)
            messages.append(reply)
            calls = reply.tool_calls if isinstance(reply, AIMessage) else []
            if not calls:
                break
            turn, refused = await _answer_calls(calls, found, url, config)
            messages.extend([*turn, *refused])
            results.extend(turn)
        if not any(m.name == FETCH_ARTICLE for m in results):
            await _fetch_anyway(found, url, config, messages, results)
        analysis: NewsAnalysis = await answer.ainvoke(messages, config)
        analysis = analysis.model_copy(
            update={"summary": cut_to_words(analysis.summary, max_words)}
        )
        return report_from(url, results, analysis)

    chain: Runnable[str, NewsReport] = RunnableLambda(run, name="news_agent")
    return chain.with_types(input_type=str, output_type=NewsReport)


def _bind_tools(llm: ChatModel, found: dict[str, BaseTool]) -> Runnable[Any, BaseMessage]:
    """``llm.bind_tools(tools)``, or a ConfigurationError for a model that cannot call tools."""
    bind_tools = getattr(llm, "bind_tools", None)
    if not callable(bind_tools):
        msg = f"{type(llm).__name__} cannot call tools (no bind_tools); use the fixed tool chain"
        raise ConfigurationError(msg)
    try:
        bound: Runnable[Any, BaseMessage] = bind_tools(list(found.values()))
    except NotImplementedError:
        msg = f"{type(llm).__name__} cannot call tools; use the fixed tool chain"
        raise ConfigurationError(msg) from None
    return bound


async def _answer_calls(
    calls: list[ToolCall], found: dict[str, BaseTool], url: str, config: RunnableConfig
) -> tuple[list[ToolMessage], list[ToolMessage]]:
    """Run one turn's tool calls about ``url``; return (their results, refusals of the others).

    Raises:
        OutputValidationError: the model called a tool it was not given.
    """
    unknown = [c["name"] for c in calls if c["name"] not in found]
    if unknown:
        raise OutputValidationError(f"the model called unknown tools: {unknown}")
    # Only this article's URL is fetched: a model steered by a page's
    # text must not make the run fetch other addresses (SSRF).
    allowed = [c for c in calls if str(c["args"].get("url", "")).strip() == url]
    turn: list[ToolMessage] = await asyncio.gather(
        *(found[c["name"]].ainvoke(c, config) for c in allowed)
    )
    refused = [
        ToolMessage(
            content=f"refused: only the article's URL ({url}) may be read",
            tool_call_id=str(c["id"]),
            name=c["name"],
            status="error",
        )
        for c in calls
        if c not in allowed
    ]
    return turn, refused


async def _fetch_anyway(
    found: dict[str, BaseTool],
    url: str,
    config: RunnableConfig,
    messages: list[BaseMessage],
    results: list[ToolMessage],
) -> None:
    """Run ``fetch_article`` for a model that never called it: the analysis reads the page."""
    call = tool_call(FETCH_ARTICLE, url, "agent-fetch")
    messages.append(AIMessage(content="", tool_calls=[call]))
    fetched: ToolMessage = await found[FETCH_ARTICLE].ainvoke(call, config)
    messages.append(fetched)
    results.append(fetched)
