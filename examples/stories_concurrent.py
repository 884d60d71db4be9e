"""Three stories generated concurrently, their tokens streamed to the terminal as they come.

Run: ``python examples/stories_concurrent.py`` (starts the embedded model when no
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` is set).
"""

import asyncio

import openai

from lc_async_pipelines import build_story_chain, model_session
from lc_async_pipelines.callbacks import MetricsCallbackHandler, TerminalStreamHandler

TOPICS = ["a magical forest", "a futuristic city", "an underwater civilization"]


async def main() -> None:
    async with model_session() as session:
        # Retry transient failures of each model call; the SDK's own retries are off.
        # session.llm streams a call when a handler asks for its tokens, as
        # TerminalStreamHandler does; otherwise it sends one plain request.
        model = session.llm.with_retry(
            retry_if_exception_type=(openai.RateLimitError, openai.APIConnectionError),
            stop_after_attempt=3,
            wait_exponential_jitter=True,
        )
        chain = build_story_chain(model, max_words=150)
        metrics = MetricsCallbackHandler()
        stream = TerminalStreamHandler(tagged=True)
        stories = await asyncio.gather(
            *(
                chain.ainvoke(
                    topic, {"callbacks": [stream, metrics], "metadata": {"item_id": topic}}
                )
                for topic in TOPICS
            )
        )
    for topic, story in zip(TOPICS, stories, strict=True):
        print(f"\n## {topic}\n{story}")
    for call in metrics.calls:
        ttft, latency = f"{call.ttft_s:.2f} s", f"{call.latency_s:.2f} s"
        print(f"{call.item_id}: ttft {ttft}, latency {latency}, {call.output_tokens} tokens")


if __name__ == "__main__":
    asyncio.run(main())
