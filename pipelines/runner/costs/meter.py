"""Costs of a run as it goes: each call and record priced, the totals, and the ``max_cost_usd`` cap.

A model call's cost is read from the reply, as LangChain reports it
(``usage_metadata``: input tokens, of which ``cache_read`` were the
provider's cached input, and output tokens; ``response_metadata``:
``model_name``); an LLM cache hit costs nothing, a Batch API reply the
batch price and a flex reply (``service_tier`` ``"flex"``) the flex price
(see :mod:`lc_async_pipelines.runner.costs`).
:class:`CostMeter` is the runner's
:class:`~lc_async_pipelines.runner.metering.RunCosts`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable

from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner._attach import largest_max_tokens
from lc_async_pipelines.runner.costs.prices import PriceTable, tier_of, usage_cost
from lc_async_pipelines.runner.inputs import Item
from lc_async_pipelines.runner.metering import ItemCostCounter

__all__ = ["CallPrice", "CostMeter", "ItemCosts", "chain_max_tokens", "item_text"]

log = logging.getLogger(__name__)


def chain_max_tokens(chain: Runnable[Any, Any]) -> int | None:
    """The largest ``max_tokens`` bound anywhere in ``chain`` (None: none found).

    For :class:`CostMeter`'s ``output_tokens``: an item's first estimate is
    then its chain's own limit (a 150-word summary's 260 tokens), not a
    default 512. A limit hidden inside a ``RunnableLambda`` is not seen.
    """
    return largest_max_tokens(chain)


def item_text(value: str | dict[str, Any]) -> str:
    """Return an item's input as text: the text, or the row as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass
class CallPrice:
    """What one call cost, what its cache hit or batch price saved, and its standard price, USD."""

    cost: float | None
    cache_saved: float = 0.0
    batch_saved: float = 0.0
    standard: float = 0.0


class ItemCosts(ItemCostCounter):
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
    # model calls only: no dispatch for every step of every chain of a large run
    ignore_chain = True
    ignore_retriever = True
    ignore_agent = True
    ignore_custom_event = True

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

    def _add(self, price: CallPrice) -> None:
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

    The cap: before an item starts, its cost is estimated: before any item
    has finished, from its input (estimated tokens at the input price) plus
    ``output_tokens`` (the chain's own ``max_tokens``) at the output price;
    once items have finished, from their measured cost per input token. An
    item starts when ``spent_usd`` plus the estimates of the items in flight
    (less what they have spent) plus its own stays within ``max_cost_usd``.
    Refused while others are in flight, it waits: each item that finishes
    frees its reservation and sharpens the estimate, and the item is asked
    again. Refused with none in flight, the cap is reached: :attr:`capped`
    turns True, no item starts, and a resumed run (with a higher cap) picks up
    the rest. So a capped run spends the cap less about one item's cost before
    it stops, and passes it by at most what the items in flight spend beyond
    their estimates.

    Args:
        prices: the price table.
        model: the run's model, for the estimates before any call.
        batch: calls go through the Batch API (estimates at the batch price).
        flex: calls go at OpenAI's flex tier (estimates at the flex price; a
            call answered at the standard tier is priced standard).
        max_cost_usd: the cap, USD (None: no cap).
        prior_usd: what earlier sessions of the run spent, USD (counted against the cap).
        output_tokens: output tokens expected of an item before any finished (the
            model's ``max_tokens``).
        warn_unpriced: log a warning naming each model found without a price
            (False for a self-hosted endpoint, whose models have none to find).

    Attributes:
        session_usd: spent by this session's calls, USD.
        cache_saved_usd: saved by LLM cache hits in this session, USD.
        batch_saved_usd: saved by the batch price in this session, USD.
        standard_usd: this session's calls, each at the standard tier, USD (an
            LLM cache hit counts 0).
        unpriced: models seen without a price.
        capped: True once an item was refused for the cap with none in flight.

    Raises:
        ConfigurationError: ``max_cost_usd`` is negative, or set while ``model``
            has no price (nothing could be estimated).
    """

    prices: PriceTable
    model: str | None = None
    batch: bool = False
    flex: bool = False
    max_cost_usd: float | None = None
    prior_usd: float = 0.0
    output_tokens: int = 512
    warn_unpriced: bool = True
    session_usd: float = field(init=False, default=0.0)
    cache_saved_usd: float = field(init=False, default=0.0)
    batch_saved_usd: float = field(init=False, default=0.0)
    standard_usd: float = field(init=False, default=0.0)
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
    def tier(self) -> str:
        """The tier estimates are priced at: ``"batch"``, ``"flex"`` or ``"standard"``."""
        return "batch" if self.batch else "flex" if self.flex else "standard"

    @property
    def spent_usd(self) -> float:
        """Spent so far, USD: earlier sessions' and this session's calls."""
        return self.prior_usd + self.session_usd

    def estimate(self, item: Item) -> float:
        """Return the estimated cost of ``item`` in USD (0 when the model has no price).

        Measured once items have finished (their cost per input token, times
        this item's input tokens); before, its input tokens plus a whole
        ``output_tokens`` reply at the model's prices.
        """
        tokens = estimate_tokens(item_text(item.input))
        if self._finished_tokens:
            return self._finished_usd / self._finished_tokens * max(1, tokens)
        price = self.prices.price_of(self.model)
        if price is None:
            return 0.0
        usage = {"input_tokens": tokens, "output_tokens": self.output_tokens}
        return usage_cost(price, usage, tier=self.tier)

    def admit(self, item: Item) -> bool:
        """Reserve ``item``'s estimate and return True, or False (the class's cap rule)."""
        if self.capped:
            return False
        estimate = self.estimate(item)
        if self.max_cost_usd is not None:
            in_flight = sum(max(0.0, est - spent) for est, spent in self._reserved.values())
            if self.spent_usd + in_flight + estimate > self.max_cost_usd:
                self.capped = not self._reserved  # with none in flight, for good
                return False
        self._reserved[item.id] = (estimate, 0.0)
        return True

    def item(self, item_id: str) -> ItemCosts:
        """Return the callback handler that prices the calls of item ``item_id``."""
        return ItemCosts(self, item_id)

    def finish(self, item: Item, costs: ItemCostCounter) -> None:
        """Release ``item``'s reservation; learn its measured cost for later estimates."""
        self._reserved.pop(item.id, None)
        if costs.calls and costs.cost_usd is not None:
            self._finished_usd += costs.cost_usd
            self._finished_tokens += max(1, estimate_tokens(item_text(item.input)))

    def price_call(self, message: AIMessage, asked: str | None = None) -> CallPrice:
        """Price one reply (see the module's rules); warn once per model without a price."""
        model = message.response_metadata.get("model_name") or asked
        price = self.prices.price_of(model)
        if price is None:
            name = str(model)
            if name not in self.unpriced:
                self.unpriced.add(name)
                if self.warn_unpriced and model is not None:
                    log.warning(
                        "no price for model %r in the price table: its records carry "
                        "cost_usd null (give prices with --prices FILE)",
                        name,
                    )
            return CallPrice(None)
        usage: Mapping[str, Any] = message.usage_metadata or {}
        tier = tier_of(message.response_metadata)
        if usage.get("total_cost") == 0:  # langchain-core's mark of an LLM cache hit
            would = usage_cost(price, usage, tier=self.tier)
            return CallPrice(0.0, cache_saved=would)
        standard = usage_cost(price, usage)
        cost = standard if tier == "standard" else usage_cost(price, usage, tier=tier)
        saved = standard - cost if tier == "batch" else 0.0
        return CallPrice(cost, batch_saved=saved, standard=standard)

    def _spend(self, item_id: str, price: CallPrice) -> None:
        self.session_usd += price.cost or 0.0
        self.cache_saved_usd += price.cache_saved
        self.batch_saved_usd += price.batch_saved
        self.standard_usd += price.standard
        if item_id in self._reserved:
            estimate, spent = self._reserved[item_id]
            self._reserved[item_id] = (estimate, spent + (price.cost or 0.0))
