"""What a run costs: a price table, the cost of each call and record, a cap, and estimates.

Prices are USD per million tokens, per model: input, cached input, output, and
the Batch API's input and output (about half). The table shipped with the
package (``prices.json`` beside this module) says where its figures come
from and when; :func:`load_prices` reads it, and a file of your own on top of
it (``--prices FILE``), checking every figure.

A model call's cost is read from the reply, as LangChain reports it
(``usage_metadata``: input tokens, of which ``cache_read`` were the
provider's cached input, and output tokens; ``response_metadata``:
``model_name``). Two kinds of calls cost less than the table's standard
price:

- **LLM cache hits** cost nothing: langchain-core marks a cached reply with
  ``usage_metadata["total_cost"] = 0`` (``BaseChatModel._convert_cached_generations``);
  what it would have cost is counted as saved by the cache.
- **Batch API calls** (:mod:`lc_async_pipelines.runner.batch_api` marks their
  replies with ``response_metadata["service_tier"] == "batch"``) cost the batch
  price; the difference to the standard price is counted as saved by the batch.

A :class:`CostMeter` gives :func:`~lc_async_pipelines.runner.run_items` each
record's cost, the run's totals, and the ``max_cost_usd`` cap: no item is
started once the money spent plus the estimate of the items in flight would
pass it. :func:`estimate_run` prices a run before it starts, calling no model.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult
from pydantic import PrivateAttr

from lc_async_pipelines._text import CHARS_PER_TOKEN, estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.inputs import Item

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

__all__ = [
    "PRICES_FORMAT",
    "CostMeter",
    "DryRunModel",
    "ItemCosts",
    "ModelPrice",
    "PriceTable",
    "RunEstimate",
    "estimate_message_tokens",
    "estimate_run",
    "load_prices",
    "usage_cost",
]

PRICES_FORMAT = 1
"""Version of the price file layout."""

_PER = 1_000_000  # prices are per million tokens
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # a dated snapshot: gpt-4o-mini-2024-07-18
# OpenAI's cookbook "How to count tokens with tiktoken": each chat message costs
# 3 tokens beyond its content, and every reply is primed with 3 more.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3
_REQUIRED = ("input", "output")
_OPTIONAL = ("cached_input", "batch_input", "batch_output", "batch_cached_input")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices, USD per million tokens.

    Attributes:
        input: input tokens.
        output: output tokens (reasoning tokens included, as providers bill them).
        cached_input: input tokens the provider served from its prompt cache.
        batch_input: input tokens through the Batch API.
        batch_output: output tokens through the Batch API.
        batch_cached_input: cached input tokens through the Batch API.
    """

    input: float
    output: float
    cached_input: float
    batch_input: float
    batch_output: float
    batch_cached_input: float


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, with where they come from.

    Attributes:
        models: model name -> :class:`ModelPrice`.
        source: where the figures come from (a URL).
        as_of: the date they were published, ISO 8601.
        note: how they were taken, and how far to trust them.
    """

    models: Mapping[str, ModelPrice]
    source: str = ""
    as_of: str = ""
    note: str = ""

    def price_of(self, model: str | None) -> ModelPrice | None:
        """Return the price of ``model``, or None when the table has none.

        Tried in order: the name as given; without a ``provider:`` prefix
        (``openai:gpt-4o``); without a snapshot date (``gpt-4o-mini-2024-07-18``
        is priced as ``gpt-4o-mini`` unless the table lists the snapshot).
        """
        if not model:
            return None
        for name in (model, model.split(":", 1)[-1]):
            if name in self.models:
                return self.models[name]
            undated = _DATED.sub("", name)
            if undated in self.models:
                return self.models[undated]
        return None


def _number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{where}: {name!r} must be a number of USD per million tokens, got {value!r}"
        raise ConfigurationError(msg)
    if value < 0:
        msg = f"{where}: {name!r} must be >= 0, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def _model_price(where: str, entry: Any) -> ModelPrice:
    if not isinstance(entry, dict):
        msg = f"{where}: expected an object of prices, got {type(entry).__name__}"
        raise ConfigurationError(msg)
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        known = ", ".join(_REQUIRED + _OPTIONAL)
        msg = f"{where}: unknown field {unknown[0]!r} (fields: {known})"
        raise ConfigurationError(msg)
    for name in _REQUIRED:
        if name not in entry:
            msg = f"{where}: {name!r} is missing"
            raise ConfigurationError(msg)
    got = {name: _number(where, name, value) for name, value in entry.items()}
    # Unknown discounts are not assumed: without its own figure, a kind of
    # token costs what the next more general price says.
    batch_input = got.get("batch_input", got["input"])
    return ModelPrice(
        input=got["input"],
        output=got["output"],
        cached_input=got.get("cached_input", got["input"]),
        batch_input=batch_input,
        batch_output=got.get("batch_output", got["output"]),
        batch_cached_input=got.get("batch_cached_input", batch_input),
    )


def _parse_table(where: str, text: str) -> PriceTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{where}: not JSON ({exc.msg} at line {exc.lineno})"
        raise ConfigurationError(msg) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        msg = f'{where}: expected {{"models": {{"MODEL": {{"input": ..., "output": ...}}}}}}'
        raise ConfigurationError(msg)
    version = data.get("format", PRICES_FORMAT)
    if version != PRICES_FORMAT:
        msg = f"{where}: format {version!r}, this version reads format {PRICES_FORMAT}"
        raise ConfigurationError(msg)
    models = {
        str(name): _model_price(f"{where}: model {name!r}", entry)
        for name, entry in data["models"].items()
    }
    return PriceTable(
        models,
        source=str(data.get("source", "")),
        as_of=str(data.get("as_of", "")),
        note=str(data.get("note", "")),
    )


def load_prices(path: str | Path | None = None) -> PriceTable:
    """Return the shipped price table, with the models of ``path`` added or replacing its own.

    Args:
        path: a JSON file ``{"source": "...", "as_of": "YYYY-MM-DD", "note": "...", "models":
            {"MODEL": {"input": 2.5, "output": 10, "cached_input": 1.25,
            "batch_input": 1.25, "batch_output": 5}}}`` in USD per million
            tokens. ``input`` and ``output`` are required; without its own
            figure, cached input costs ``input``, batch input ``input``, batch
            output ``output``, and batch cached input ``batch_input``.

    Returns:
        The table (shipped models, then the file's, which win).

    Raises:
        ConfigurationError: the file cannot be read, is not JSON, or a figure is
            missing, unknown, negative or not a number (one line naming the
            file, the model and the field).
    """
    shipped_text = resources.files(__package__ or __name__).joinpath("prices.json").read_text()
    shipped = _parse_table("prices.json (shipped)", shipped_text)
    if path is None:
        return shipped
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        msg = f"--prices {path}: cannot be read ({reason})"
        raise ConfigurationError(msg) from None
    own = _parse_table(str(path), text)
    source = f"{own.source or path}, over the shipped table ({shipped.source})"
    return PriceTable(
        {**shipped.models, **own.models}, source=source, as_of=own.as_of, note=own.note
    )


def usage_cost(price: ModelPrice, usage: Mapping[str, Any], *, batch: bool = False) -> float:
    """Return the cost in USD of one call's ``usage`` at ``price``.

    Args:
        price: the model's prices.
        usage: LangChain's ``usage_metadata``: ``input_tokens``,
            ``output_tokens``, and ``input_token_details["cache_read"]`` (input
            tokens served from the provider's prompt cache, part of ``input_tokens``).
        batch: priced as a Batch API call.

    Returns:
        USD: ``(uncached input x input + cached x cached input + output x output) / 1e6``.
    """
    tokens_in = _count(usage.get("input_tokens"))
    tokens_out = _count(usage.get("output_tokens"))
    details = usage.get("input_token_details")
    cached = min(tokens_in, _count(details.get("cache_read"))) if isinstance(details, dict) else 0
    if batch:
        rates = (price.batch_input, price.batch_cached_input, price.batch_output)
    else:
        rates = (price.input, price.cached_input, price.output)
    return ((tokens_in - cached) * rates[0] + cached * rates[1] + tokens_out * rates[2]) / _PER


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


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


def _text_of(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass
class _CallPrice:
    cost: float | None
    cache_saved: float = 0.0
    batch_saved: float = 0.0


class ItemCosts(BaseCallbackHandler):
    """Callback handler pricing each model call of one item as it ends (see the module's rules).

    Made by :meth:`CostMeter.item`; the runner adds it to the item's callbacks
    and reads the totals into the item's record.

    Attributes:
        cost_usd: the item's cost so far, USD; None once a call's model has no price.
        cache_saved_usd: what its LLM cache hits would have cost, USD.
        batch_saved_usd: standard price minus batch price of its batch calls, USD.
        calls: calls priced (or found unpriced).
    """

    run_inline = True  # cheap arithmetic: no hop to a thread pool

    def __init__(self, meter: CostMeter, item_id: str) -> None:
        self.meter = meter
        self.item_id = item_id
        self.cost_usd: float | None = 0.0
        self.cache_saved_usd = 0.0
        self.batch_saved_usd = 0.0
        self.calls = 0
        self._models: dict[UUID, str | None] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note the model the call asks for (the reply's own name wins)."""
        params = kwargs.get("invocation_params") or {}
        name = (
            (metadata or {}).get("ls_model_name") or params.get("model_name") or params.get("model")
        )
        self._models[run_id] = str(name) if name else None

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Price the call's reply and count it in this item and in the meter."""
        asked = self._models.pop(run_id, None)
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                if isinstance(message, AIMessage):
                    self._add(self.meter.price_call(message, asked))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a failed call: providers bill no failed request."""
        self._models.pop(run_id, None)

    def _add(self, price: _CallPrice) -> None:
        self.calls += 1
        if price.cost is None or self.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += price.cost
        self.cache_saved_usd += price.cache_saved
        self.batch_saved_usd += price.batch_saved
        self.meter._spend(self.item_id, price)


@dataclass
class CostMeter:
    """Costs of a run, as it goes: per record, totals, and the ``max_cost_usd`` cap.

    Give it to :class:`~lc_async_pipelines.runner.RunOptions` (``costs=``):
    every record then carries ``cost_usd`` (None when a call's model has no
    price: a warning names the model once), ``cache_saved_usd`` and
    ``batch_saved_usd``.

    The cap: before an item starts, its cost is estimated: at first from its
    input (estimated tokens at the input price, plus ``output_tokens`` at the
    output price), and, once items have finished, at least their measured cost
    per input token times its input. No item starts once ``spent_usd`` plus the
    estimates of the items in flight (less what they have spent) plus its own
    would pass ``max_cost_usd``; from then on :attr:`capped` is True and no item
    starts, so a resumed run (with a higher cap) picks up the rest. The cap can
    be passed by what the estimates miss: the first estimate errs high for a
    single call (a whole ``max_tokens`` reply) but low for a chain of several
    calls, which later estimates learn from the items that finish; items
    started together before any finishes (a Batch API stage) are all
    estimated from their inputs alone.

    Args:
        prices: the price table.
        model: the run's model, for the estimates before any call.
        batch: calls go through the Batch API (estimates at the batch price).
        max_cost_usd: the cap, USD (None: no cap).
        prior_usd: what earlier sessions of the run spent, USD (counted against the cap).
        output_tokens: output tokens expected of an item before any finished (the
            model's ``max_tokens``).

    Attributes:
        session_usd: spent by this session's calls, USD.
        cache_saved_usd: saved by LLM cache hits in this session, USD.
        batch_saved_usd: saved by the batch price in this session, USD.
        unpriced: models seen without a price.
        capped: True once an item was refused for the cap.

    Raises:
        ConfigurationError: ``max_cost_usd`` is negative, or set while ``model``
            has no price (nothing could be estimated).
    """

    prices: PriceTable
    model: str | None = None
    batch: bool = False
    max_cost_usd: float | None = None
    prior_usd: float = 0.0
    output_tokens: int = 512
    session_usd: float = field(init=False, default=0.0)
    cache_saved_usd: float = field(init=False, default=0.0)
    batch_saved_usd: float = field(init=False, default=0.0)
    unpriced: set[str] = field(init=False, default_factory=set)
    capped: bool = field(init=False, default=False)
    _reserved: dict[str, tuple[float, float]] = field(init=False, default_factory=dict)
    _finished_usd: float = field(init=False, default=0.0)
    _finished_tokens: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.max_cost_usd is not None and not self.max_cost_usd >= 0:
            msg = f"max_cost_usd must be >= 0, got {self.max_cost_usd!r}"
            raise ConfigurationError(msg)
        if self.max_cost_usd is not None and self.prices.price_of(self.model) is None:
            msg = (
                f"--max-cost: no price for model {self.model!r} in the price table "
                f"({self.prices.source or 'no source'}); give one with --prices FILE"
            )
            raise ConfigurationError(msg)

    @property
    def spent_usd(self) -> float:
        """Spent so far, USD: earlier sessions' and this session's calls."""
        return self.prior_usd + self.session_usd

    def estimate(self, item: Item) -> float:
        """Return the estimated cost of ``item`` in USD (0 when the model has no price)."""
        price = self.prices.price_of(self.model)
        tokens = estimate_tokens(_text_of(item.input))
        guess = 0.0
        if price is not None:
            usage = {"input_tokens": tokens, "output_tokens": self.output_tokens}
            guess = usage_cost(price, usage, batch=self.batch)
        if self._finished_tokens:
            guess = max(guess, self._finished_usd / self._finished_tokens * tokens)
        return guess

    def admit(self, item: Item) -> bool:
        """Reserve ``item``'s estimate and return True, or return False (for good) at the cap."""
        if self.capped:
            return False
        estimate = self.estimate(item)
        if self.max_cost_usd is not None:
            in_flight = sum(max(0.0, est - spent) for est, spent in self._reserved.values())
            if self.spent_usd + in_flight + estimate > self.max_cost_usd:
                self.capped = True
                return False
        self._reserved[item.id] = (estimate, 0.0)
        return True

    def item(self, item_id: str) -> ItemCosts:
        """Return the callback handler that prices the calls of item ``item_id``."""
        return ItemCosts(self, item_id)

    def finish(self, item: Item, costs: ItemCosts) -> None:
        """Release ``item``'s reservation; learn its measured cost for later estimates."""
        self._reserved.pop(item.id, None)
        if costs.calls and costs.cost_usd is not None:
            self._finished_usd += costs.cost_usd
            self._finished_tokens += max(1, estimate_tokens(_text_of(item.input)))

    def price_call(self, message: AIMessage, asked: str | None = None) -> _CallPrice:
        """Price one reply (see the module's rules); warn once per model without a price."""
        model = message.response_metadata.get("model_name") or asked
        price = self.prices.price_of(model)
        if price is None:
            name = str(model)
            if name not in self.unpriced:
                self.unpriced.add(name)
                log.warning(
                    "no price for model %r in the price table: its records carry cost_usd null "
                    "(give prices with --prices FILE)",
                    name,
                )
            return _CallPrice(None)
        usage: Mapping[str, Any] = message.usage_metadata or {}
        batched = message.response_metadata.get("service_tier") == "batch"
        standard = usage_cost(price, usage)
        cost = usage_cost(price, usage, batch=True) if batched else standard
        if usage.get("total_cost") == 0:  # langchain-core's mark of an LLM cache hit
            would = usage_cost(price, usage, batch=self.batch)
            return _CallPrice(0.0, cache_saved=would)
        return _CallPrice(cost, batch_saved=standard - cost)

    def _spend(self, item_id: str, price: _CallPrice) -> None:
        self.session_usd += price.cost or 0.0
        self.cache_saved_usd += price.cache_saved
        self.batch_saved_usd += price.batch_saved
        if item_id in self._reserved:
            estimate, spent = self._reserved[item_id]
            self._reserved[item_id] = (estimate, spent + (price.cost or 0.0))


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
    """

    model_name: str = "dry-run"
    max_tokens: int = 512
    batch_api: bool = False
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
        items: items that would run.
        row_errors: items that would be error records without a call (bad rows,
            inputs over ``max_input_tokens``).
        stopped: items whose chain failed on a stand-in reply (a schema it does
            not fit): their calls after that one are not counted.
        calls: model calls.
        input_tokens: estimated input tokens (3.5 characters a token).
        output_tokens: output tokens, at most: each call's ``max_tokens``.
        cost_usd: estimated cost, USD (None: the model has no price).
        standard_cost_usd: the same calls at the standard price, USD.
        wall_s: wall time at the given RPM/TPM, seconds (None: not bounded by them).
        prices: the price table's source and date.
    """

    model: str
    batch: bool
    items: int = 0
    row_errors: int = 0
    stopped: int = 0
    calls: int = 0
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
        mode = "Batch API price" if self.batch else "standard price"
        lines = [
            f"dry run: {self.items} items, {self.calls} model calls of {self.model} (none sent)",
            f"tokens: about {self.input_tokens:,} in, at most {self.output_tokens:,} out "
            "(each call's max_tokens)",
            f"cost: {cost} at the {mode}"
            + (
                f" (standard: ${self.standard_cost_usd:.4f})"
                if self.batch and self.standard_cost_usd is not None
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
            lines.append(f"{self.row_errors} items would be error records without a call")
        if self.stopped:
            lines.append(
                f"{self.stopped} items' chains stopped on a stand-in reply; "
                "their later calls, if any, are not counted"
            )
        return "\n".join(lines)


async def estimate_run(
    build: Callable[[BaseChatModel], Runnable[Any, Any]],
    items: Iterable[Item],
    *,
    model: str,
    prices: PriceTable,
    batch: bool = False,
    max_tokens: int = 512,
    rpm: float | None = None,
    tpm: float | None = None,
    limit: int | None = None,
    skip: frozenset[str] = frozenset(),
    max_input_tokens: int | None = None,
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
        max_tokens: reply length of calls that set none (the model's ``max_tokens``).
        rpm: requests per minute of the run, for the wall time.
        tpm: tokens per minute of the run, for the wall time (charged as the
            budget charges: input plus ``max_tokens``).
        limit: as :class:`~lc_async_pipelines.runner.RunOptions`.
        skip: as :class:`~lc_async_pipelines.runner.RunOptions`.
        max_input_tokens: as :class:`~lc_async_pipelines.runner.RunOptions`.

    Returns:
        The :class:`RunEstimate`; print :meth:`RunEstimate.describe`.
    """
    from lc_async_pipelines.errors import RowError
    from lc_async_pipelines.runner.core import RetryPolicy, RunOptions, run_items

    stand_in = DryRunModel(model_name=model, max_tokens=max_tokens, batch_api=batch)
    chain = build(stand_in)
    meter = CostMeter(prices, model=model, batch=batch)
    options = RunOptions(
        concurrency=64,
        retry=RetryPolicy(max_retries=0),
        limit=limit,
        skip=skip,
        max_input_tokens=max_input_tokens,
        costs=meter,
    )
    estimate = RunEstimate(model=model, batch=batch, prices=_describe_prices(prices))
    async for record in run_items(chain, items, options):
        if record.calls == 0 and isinstance(record.exception, RowError):
            estimate.row_errors += 1
            continue
        estimate.items += 1
        estimate.stopped += not record.ok
        estimate.calls += record.calls
        estimate.input_tokens += record.usage.get("input_tokens", 0)
        estimate.output_tokens += record.usage.get("output_tokens", 0)
    estimate.cost_usd = None if meter.unpriced else meter.session_usd
    usage = {"input_tokens": estimate.input_tokens, "output_tokens": estimate.output_tokens}
    price = prices.price_of(model)
    estimate.standard_cost_usd = None if price is None else usage_cost(price, usage)
    minutes = []
    if rpm:
        minutes.append(estimate.calls / rpm)
    if tpm:
        minutes.append((estimate.input_tokens + estimate.output_tokens) / tpm)
    estimate.wall_s = max(minutes) * 60 if minutes else None
    return estimate


def _describe_prices(prices: PriceTable) -> str:
    when = f", as published on {prices.as_of}" if prices.as_of else ""
    note = f" ({prices.note})" if prices.note else ""
    return f"{prices.source or 'no source given'}{when}{note}"
