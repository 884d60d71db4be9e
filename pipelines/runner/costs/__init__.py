"""What a run costs: a price table, the cost of each call and record, a cap, and estimates.

Prices are USD per million tokens, per model: input, cached input (read from
the provider's prompt cache, and written to it), output, at each tier:
standard, the Batch API's and OpenAI's flex tier (about half).
:func:`load_prices` gives every provider and model the ``genai-prices``
package knows (its bundled data, read offline; where it has no batch or flex
rate for a model, the provider's documented discount), the embedded model at
$0, and a file of your own on top (``--prices FILE``), checking every figure.
A model none of them knows is unpriced (``cost_usd`` null), never $0.

A model call's cost is read from the reply, as LangChain reports it
(``usage_metadata``: input tokens, of which ``cache_read`` were read from
the provider's prompt cache and ``cache_creation`` written to it, and output
tokens; ``response_metadata``: ``model_name``, and ``service_tier``, the tier
that answered). Three kinds of calls cost less than the standard price:

- **LLM cache hits** cost nothing: langchain-core marks a cached reply with
  ``usage_metadata["total_cost"] = 0`` (``BaseChatModel._convert_cached_generations``);
  what it would have cost is counted as saved by the cache.
- **Batch API calls** (:mod:`lc_async_pipelines.runner.batch` marks their
  replies with ``response_metadata["service_tier"] == "batch"``) cost the batch
  price; the difference to the standard price is counted as saved by the batch.
- **Flex calls** (``response_metadata["service_tier"] == "flex"``, OpenAI's
  echo of the tier that answered) cost the flex price.

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
    TIERS,
    ModelPrice,
    PriceTable,
    load_prices,
    tier_of,
    usage_cost,
)

__all__ = [
    "PRICES_FORMAT",
    "TIERS",
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
    "tier_of",
    "usage_cost",
]
