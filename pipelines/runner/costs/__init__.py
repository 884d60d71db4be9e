"""What a run costs: a price table, the cost of each call and record, a cap, and estimates.

Prices are USD per million tokens, per model: input, cached input, output, and
the Batch API's input and output (about half). The table shipped with the
package (``prices.json`` beside :mod:`lc_async_pipelines.runner.costs.prices`) says
where its figures come from and when; :func:`load_prices` reads it, and a file of your own on top of
it (``--prices FILE``), checking every figure.

A model call's cost is read from the reply, as LangChain reports it
(``usage_metadata``: input tokens, of which ``cache_read`` were the
provider's cached input, and output tokens; ``response_metadata``:
``model_name``). Two kinds of calls cost less than the table's standard
price:

- **LLM cache hits** cost nothing: langchain-core marks a cached reply with
  ``usage_metadata["total_cost"] = 0`` (``BaseChatModel._convert_cached_generations``);
  what it would have cost is counted as saved by the cache.
- **Batch API calls** (:mod:`lc_async_pipelines.runner.batch` marks their
  replies with ``response_metadata["service_tier"] == "batch"``) cost the batch
  price; the difference to the standard price is counted as saved by the batch.

A :class:`CostMeter` gives :func:`~lc_async_pipelines.runner.run_items` each
record's cost, the run's totals, and the ``max_cost_usd`` cap: no item is
started once the money spent plus the estimate of the items in flight would
pass it. :func:`estimate_run` prices a run before it starts, calling no model.
"""

from lc_async_pipelines.runner.costs.estimate import (
    DryRunModel,
    RunEstimate,
    estimate_message_tokens,
    estimate_run,
)
from lc_async_pipelines.runner.costs.meter import CostMeter, ItemCosts, chain_max_tokens
from lc_async_pipelines.runner.costs.prices import (
    PRICES_FORMAT,
    ModelPrice,
    PriceTable,
    load_prices,
    usage_cost,
)

__all__ = [
    "PRICES_FORMAT",
    "CostMeter",
    "DryRunModel",
    "ItemCosts",
    "ModelPrice",
    "PriceTable",
    "RunEstimate",
    "chain_max_tokens",
    "estimate_message_tokens",
    "estimate_run",
    "load_prices",
    "usage_cost",
]
