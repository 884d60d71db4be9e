"""What a run would cost and take, before it starts: its chain run on a stand-in model.

:func:`estimate_run` runs every item through the chain built on a
:class:`DryRunModel`, which answers at once with replies of their largest
length and sends nothing, and prices the calls it counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from lc_async_pipelines._text import CHARS_PER_TOKEN, estimate_tokens
from lc_async_pipelines.errors import RowError
from lc_async_pipelines.runner.costs.meter import CostMeter
from lc_async_pipelines.runner.costs.prices import PriceTable
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.loop import run_items
from lc_async_pipelines.runner.options import RunOptions
from lc_async_pipelines.runner.record import Record
from lc_async_pipelines.runner.retry import RetryPolicy

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

__all__ = ["DryRunModel", "RunEstimate", "estimate_message_tokens", "estimate_run"]

# OpenAI's cookbook "How to count tokens with tiktoken": each chat message costs
# 3 tokens beyond its content, and every reply is primed with 3 more.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


def estimate_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """Estimate the input tokens of a chat request (3.5 characters a token, plus framing).

    Each message adds 3 tokens and the reply 3 more (OpenAI's cookbook, "How
    to count tokens with tiktoken"); content that is not text is counted by
    its JSON.
    """
    total = _TOKENS_PER_REPLY
    for message in messages:
        content = message.content
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        total += estimate_tokens(text) + _TOKENS_PER_MESSAGE
    return total


class DryRunModel(BaseChatModel):
    """A stand-in chat model for :func:`estimate_run`: records nothing, calls nothing.

    Each call is answered at once with filler text as long as the call's
    ``max_tokens`` (its largest reply), and usage as if it had been sent:
    input tokens estimated from the messages (:func:`estimate_message_tokens`),
    output tokens ``max_tokens``. So every step of a chain runs, and a later
    step's prompt holds earlier replies of their largest length.

    Attributes:
        model_name: the model the replies are priced as.
        max_tokens: the reply length when a call sets none.
        batch_api: mark replies as Batch API replies (priced at the batch price).
        service_tier: the ``service_tier`` replies say they were answered at
            (``"flex"``: priced at the flex price); None: none said.
    """

    model_name: str = "dry-run"
    max_tokens: int = 512
    batch_api: bool = False
    service_tier: str | None = None
    _calls: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "dry-run"

    @property
    def calls(self) -> int:
        """Calls answered so far."""
        return self._calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._calls += 1
        limit = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens") or self.max_tokens
        out = int(limit)
        tokens_in = estimate_message_tokens(messages)
        # "dry " is 4 characters: this many make ``out`` estimated tokens.
        filler = ("dry " * math.ceil(out * CHARS_PER_TOKEN / 4)).strip()
        metadata: dict[str, Any] = {"model_name": self.model_name, "finish_reason": "stop"}
        if self.batch_api:
            metadata["service_tier"] = "batch"
        elif self.service_tier:
            metadata["service_tier"] = self.service_tier
        usage = UsageMetadata(
            input_tokens=tokens_in, output_tokens=out, total_tokens=tokens_in + out
        )
        reply = AIMessage(content=filler, response_metadata=metadata, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=reply)])


@dataclass
class RunEstimate:
    """What a run would cost and take, from :func:`estimate_run` (no model called).

    Attributes:
        model: the model priced.
        batch: priced at the Batch API's price.
        flex: priced at OpenAI's flex price (every call answered at the flex tier).
        items: items that would run.
        row_errors: items that would be error records without a call (bad rows,
            inputs over ``max_input_tokens``).
        stopped: items whose chain failed on a stand-in reply (a schema it does
            not fit): their calls after that one are not counted.
        calls: model calls.
        most_calls: the most calls one item would make.
        most_calls_line: the input line of that item (None: no item).
        row_error: the first row error's message (empty: none), to say why.
        input_tokens: estimated input tokens (3.5 characters a token).
        output_tokens: output tokens, at most: each call's ``max_tokens``.
        cost_usd: estimated cost, USD (None: the model has no price).
        standard_cost_usd: the same calls at the standard price, USD.
        wall_s: wall time at the given RPM/TPM, seconds (None: not bounded by them).
        prices: the price table's source and date.
    """

    model: str
    batch: bool
    flex: bool = False
    items: int = 0
    row_errors: int = 0
    stopped: int = 0
    calls: int = 0
    most_calls: int = 0
    most_calls_line: int | None = None
    row_error: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    standard_cost_usd: float | None = 0.0
    wall_s: float | None = None
    prices: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as a JSON object (costs rounded to 1e-6 USD)."""
        data = dict(self.__dict__)
        for key in ("cost_usd", "standard_cost_usd"):
            value = data[key]
            data[key] = None if value is None else round(value, 6)
        data["wall_s"] = None if self.wall_s is None else round(self.wall_s, 1)
        return data

    def describe(self) -> str:
        """Return the estimate as a few lines for people."""
        cost = (
            "unknown (no price for the model)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        )
        mode = "Batch API price" if self.batch else "flex price" if self.flex else "standard price"
        lines = [
            f"dry run: {self.items} items, {self.calls} model calls of {self.model} (none sent)",
            self._calls_per_item(),
            f"tokens: about {self.input_tokens:,} in, at most {self.output_tokens:,} out "
            "(each call's max_tokens)",
            f"cost: {cost} at the {mode}"
            + (
                f" (standard: ${self.standard_cost_usd:.4f})"
                if (self.batch or self.flex) and self.standard_cost_usd is not None
                else ""
            ),
            f"prices: {self.prices}",
        ]
        if self.batch:
            lines.append("wall time: each stage of calls is one batch, done within 24 h")
        elif self.wall_s is not None:
            lines.append(f"wall time: at least {self.wall_s:,.0f} s at the given --rpm/--tpm")
        else:
            lines.append("wall time: not bounded by --rpm/--tpm (set them to estimate it)")
        if self.row_errors:
            lines.append(
                f"{self.row_errors} items would be error records without a call "
                f"(first: {self.row_error})"
            )
        if self.stopped:
            lines.append(
                f"{self.stopped} items' chains stopped on a stand-in reply; "
                "their later calls, if any, are not counted"
            )
        return "\n".join(lines)

    def _calls_per_item(self) -> str:
        if not self.items:
            return "calls per item: none (no item would run)"
        mean = self.calls / self.items
        where = f" (line {self.most_calls_line})" if self.most_calls_line is not None else ""
        return f"calls per item: {mean:.1f} on average, at most {self.most_calls}{where}"


async def estimate_run(
    build: Callable[[BaseChatModel], Runnable[Any, Any]],
    items: Iterable[Item],
    *,
    model: str,
    prices: PriceTable,
    batch: bool = False,
    flex: bool = False,
    max_tokens: int = 512,
    rpm: float | None = None,
    tpm: float | None = None,
    limit: int | None = None,
    skip: frozenset[str] = frozenset(),
    max_input_tokens: int | None = None,
    prompt_tokens: int = 0,
) -> RunEstimate:
    """Estimate a run's tokens, cost and wall time by running its chain on a stand-in model.

    Every item runs through the chain built on a :class:`DryRunModel` (no
    request is sent), the way :func:`~lc_async_pipelines.runner.run_items`
    would run it (same ``limit``, ``skip``, ``max_input_tokens``, duplicates
    skipped). Every call of every step is counted: prompts are rendered from
    the real inputs, and a step after a model call sees a stand-in reply of
    that call's largest length, so multi-step chains (map-reduce, outline then
    story) are priced as if every reply filled its ``max_tokens``: an upper
    bound on output, and on the input of later steps.

    Args:
        build: makes the chain from a chat model (``lambda llm: spec.build(llm, **options)``).
        items: the run's items.
        model: the model to price (the run's).
        prices: the price table.
        batch: price at the Batch API's price.
        flex: price at OpenAI's flex price (as if flex answered every call).
        max_tokens: reply length of calls that set none (the model's ``max_tokens``).
        rpm: requests per minute of the run, for the wall time.
        tpm: tokens per minute of the run, for the wall time (charged as the
            budget charges: input plus ``max_tokens``).
        limit: as :class:`~lc_async_pipelines.runner.RunOptions`.
        skip: as :class:`~lc_async_pipelines.runner.RunOptions`.
        max_input_tokens: as :class:`~lc_async_pipelines.runner.RunOptions`.
        prompt_tokens: as :class:`~lc_async_pipelines.runner.RunOptions`.

    Returns:
        The :class:`RunEstimate`; print :meth:`RunEstimate.describe`.
    """
    stand_in = DryRunModel(
        model_name=model,
        max_tokens=max_tokens,
        batch_api=batch,
        service_tier="flex" if flex else None,
    )
    chain = build(stand_in)
    meter = CostMeter(prices, model=model, batch=batch, flex=flex)
    options = RunOptions(
        concurrency=64,
        retry=RetryPolicy(max_retries=0),
        limit=limit,
        skip=skip,
        max_input_tokens=max_input_tokens,
        prompt_tokens=prompt_tokens,
        costs=meter,
    )
    estimate = RunEstimate(
        model=model, batch=batch, flex=flex, prices=_describe_prices(prices, model)
    )
    async for record in run_items(chain, items, options):
        if record.calls == 0 and isinstance(record.exception, RowError):
            estimate.row_errors += 1
            estimate.row_error = estimate.row_error or _first_line(record)
            continue
        if record.calls > estimate.most_calls:
            estimate.most_calls, estimate.most_calls_line = record.calls, record.line
        estimate.items += 1
        estimate.stopped += not record.ok
        estimate.calls += record.calls
        estimate.input_tokens += record.usage.get("input_tokens", 0)
        estimate.output_tokens += record.usage.get("output_tokens", 0)
    estimate.cost_usd = None if meter.unpriced else meter.session_usd
    # per call, as the run's total would cross a long-context threshold no call does
    estimate.standard_cost_usd = None if meter.unpriced else meter.standard_usd
    minutes = []
    if rpm:
        minutes.append(estimate.calls / rpm)
    if tpm:
        minutes.append((estimate.input_tokens + estimate.output_tokens) / tpm)
    estimate.wall_s = max(minutes) * 60 if minutes else None
    return estimate


def _first_line(record: Record) -> str:
    """A row error's message, with its line when the message does not name one."""
    message = str((record.error or {}).get("message", ""))[:200]
    return message if message.startswith("line ") else f"line {record.line}: {message}"


def _describe_prices(prices: PriceTable, model: str) -> str:
    when = f", as published on {prices.as_of}" if prices.as_of else ""
    price = prices.price_of(model)
    detail = price.source if price is not None and price.catalog is not None else prices.note
    note = f" ({detail})" if detail else ""
    return f"{prices.source or 'no source given'}{when}{note}"
