"""``pipelines invoke``, the call: one input through the chain on a model session, printed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._checks import check_model_key
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable, RunnableConfig

    from lc_async_pipelines.registry import PipelineSpec

__all__ = ["call_once"]


async def call_once(
    args: argparse.Namespace, spec: PipelineSpec, options: dict[str, Any], value: Any
) -> ExitCode:
    """Run ``value`` through the pipeline on the configured model; print what it gives.

    Returns:
        ``OK``, or ``ITEMS_FAILED`` when the call failed (one line on stderr:
        its error class and scrubbed message).
    """
    from lc_async_pipelines.callbacks import MetricsCallbackHandler
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.runner import RetryPolicy
    from lc_async_pipelines.runner.costs import CostMeter, load_prices
    from lc_async_pipelines.runner.limits.chat_model import govern
    from lc_async_pipelines.session import model_session

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    if not spec.owns_model:
        check_model_key(settings)
    retry = RetryPolicy(max_retries=args.max_retries)
    async with model_session(settings, retry=retry) as session:
        chain = spec.build(session.llm, **options)
        if spec.owns_model:
            chain = govern(chain, session.budget, retry=retry)
        metrics = MetricsCallbackHandler()
        meter = CostMeter(
            load_prices(), model=settings.model_name, warn_unpriced=settings.known_provider
        )
        costs = meter.item("invoke")
        config: RunnableConfig = {"callbacks": [metrics, costs]}
        start = time.perf_counter()
        try:
            output = await _call(chain, value, config, stream=args.stream, to_stderr=args.json)
        except Exception as exc:  # the call's failure: one line, exit 1
            from lc_async_pipelines._scrub import error_text

            print(f"pipelines invoke: {type(exc).__name__}: {error_text(exc)}", file=sys.stderr)
            return ExitCode.ITEMS_FAILED
        figures = {
            "model": session.settings.model_name,
            "usage": metrics.usage(),
            "cost_usd": costs.cost_usd if costs.calls else None,
            "latency_s": round(time.perf_counter() - start, 4),
            "ttft_s": _rounded(metrics.first_ttft()),
        }
    _print(output, figures, as_json=args.json, streamed=args.stream)
    return ExitCode.OK


async def _call(
    chain: Runnable[Any, Any], value: Any, config: RunnableConfig, *, stream: bool, to_stderr: bool
) -> Any:
    """``ainvoke``, or ``astream`` writing each text piece as it comes (stderr under --json)."""
    if not stream:
        return await chain.ainvoke(value, config)
    out = sys.stderr if to_stderr else sys.stdout
    pieces: list[Any] = []
    async for piece in chain.astream(value, config):
        pieces.append(piece)
        if isinstance(piece, str):
            out.write(piece)
            out.flush()
    if pieces and all(isinstance(p, str) for p in pieces):
        out.write("\n")
        return "".join(pieces)
    return pieces[-1] if pieces else None  # a structured output comes whole


def _print(output: Any, figures: dict[str, Any], *, as_json: bool, streamed: bool) -> None:
    """The output on stdout: text as it is, structured output as JSON; or all of it as JSON."""
    shown = output.model_dump() if hasattr(output, "model_dump") else output
    if as_json:
        print(json.dumps({"output": shown, **figures}, ensure_ascii=False))
    elif not (streamed and isinstance(output, str)):
        text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False, indent=1)
        print(text)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
