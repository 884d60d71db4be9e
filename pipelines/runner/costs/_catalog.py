"""Prices from the ``genai-prices`` package's bundled data: every provider and model it knows.

``genai_prices.calc_price`` prices a call from its usage, model name and
provider (https://github.com/pydantic/genai-prices, its README): the data is
the snapshot bundled with the installed package; it downloads newer data only
when someone starts its ``UpdatePrices`` (opt-in), which this package never
does, so a run prices offline (an app that starts ``UpdatePrices`` itself
makes genai-prices use the downloaded data in its whole process).

Batch and flex rates are genai-prices' own where it has them (its price
variants ``{"processing": "batch"}`` and ``{"service_tier": "flex"}``); where
it has none for a model, the provider's documented discount applies
(:data:`DISCOUNTS`); a provider with none documented is priced at its
standard rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

__all__ = ["DISCOUNTS", "CatalogModel", "catalog_cost", "catalog_model", "catalog_version"]

DISCOUNTS: Mapping[tuple[str, str], tuple[float, str]] = {
    ("openai", "batch"): (0.5, "https://platform.openai.com/docs/guides/batch: 50% off"),
    # OpenAI: "Tokens are priced at Batch API rates" (the batch variant when genai-prices has it)
    ("openai", "flex"): (0.5, "https://platform.openai.com/docs/guides/flex-processing"),
    ("anthropic", "batch"): (
        0.5,
        "https://docs.anthropic.com/en/docs/build-with-claude/batch-processing: 50% off",
    ),
    ("google", "batch"): (0.5, "https://ai.google.dev/gemini-api/docs/batch-mode: 50% off"),
    ("google", "flex"): (0.5, "https://ai.google.dev/gemini-api/docs/flex-inference: 50% off"),
}
"""(provider, tier) -> (price factor, source): discounts used where genai-prices has no rate."""

# genai-prices' price contexts (its README: "Request pricing context", "Batch API")
_CONTEXTS: Mapping[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}

# LangChain's init_chat_model providers whose genai-prices id differs.
_PROVIDER_IDS = {
    "google_genai": "google",
    "google_vertexai": "google",
    "azure_openai": "azure",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "anthropic_bedrock": "aws",
    "xai": "x-ai",
    "mistralai": "mistral",
}

_PER = 1_000_000
# Rates are read from a call this small, under every tier threshold genai-prices has
# (Claude Sonnet 4.5's 200K, Gemini's 128K/200K input tokens), then scaled to 1M:
# a call of 1M tokens would be priced at the long-context tier.
_SAMPLE = 1_000


@dataclass(frozen=True)
class CatalogModel:
    """A model genai-prices knows: where to price it, and its rates now (USD per 1M tokens).

    Attributes:
        model_ref: the name to price it by.
        provider: genai-prices' provider id.
        model_id: genai-prices' model id.
        rates: tier (``"standard"``, ``"batch"``, ``"flex"``) -> (input, cached
            input, cache write, output) at the lowest tier of a tiered price,
            for estimates and descriptions; a call is priced by :func:`catalog_cost`.
        sources: tier -> where its rate comes from.
    """

    model_ref: str
    provider: str
    model_id: str
    rates: Mapping[str, tuple[float, float, float, float]] = field(compare=False)
    sources: Mapping[str, str] = field(compare=False)


def catalog_version() -> str:
    """Return ``"genai-prices X.Y.Z"``, the installed package."""
    import genai_prices

    return f"genai-prices {genai_prices.__version__}"


@cache
def catalog_model(name: str, provider: str | None = None) -> CatalogModel | None:
    """Return the model ``name`` (of LangChain's ``provider``, if known) in genai-prices, or None.

    Cached per name: the lookup is genai-prices' own matching (snapshot dates,
    aliases, ``provider/model`` names).
    """
    import genai_prices

    provider_id = _PROVIDER_IDS.get(provider, provider) if provider else None
    try:
        found = genai_prices.calc_price(genai_prices.Usage(), name, provider_id=provider_id)
    except LookupError:
        return None
    ref = CatalogModel(name, found.provider.id, found.model.id, {}, {})
    rates: dict[str, tuple[float, float, float, float]] = {}
    sources: dict[str, str] = {}
    for tier in ("standard", "batch", "flex"):
        per_token = [
            catalog_cost(ref, {"input_tokens": _SAMPLE, **extra}, tier) * _PER / _SAMPLE
            for extra in ({}, {"cache_read": _SAMPLE}, {"cache_creation": _SAMPLE})
        ]
        output = catalog_cost(ref, {"output_tokens": _SAMPLE}, tier) * _PER / _SAMPLE
        rates[tier] = (per_token[0], per_token[1], per_token[2], output)
        sources[tier] = _tier_source(ref, tier)
    return CatalogModel(name, ref.provider, ref.model_id, rates, sources)


def catalog_cost(model: CatalogModel, tokens: Mapping[str, int], tier: str = "standard") -> float:
    """Return the cost in USD of one call at ``tier``.

    Args:
        model: from :func:`catalog_model`.
        tokens: ``input_tokens`` (all input, cached included), ``cache_read``,
            ``cache_creation`` (parts of it), ``output_tokens``.
        tier: ``"standard"``, ``"batch"``, ``"flex"`` or ``"priority"``.
    """
    import genai_prices

    usage = genai_prices.Usage(
        input_tokens=tokens.get("input_tokens", 0),
        cache_read_tokens=tokens.get("cache_read", 0),
        cache_write_tokens=tokens.get("cache_creation", 0),
        output_tokens=tokens.get("output_tokens", 0),
    )
    context = _CONTEXTS.get(tier)
    has_rate = context is not None and _has_variant(model, context)
    priced = genai_prices.calc_price(
        usage,
        model.model_ref,
        provider_id=model.provider,
        price_context=context if has_rate else None,
    )
    total = float(priced.total_price)
    if context is None or has_rate:
        return total
    if tier == "flex" and model.provider == "openai" and _has_variant(model, _CONTEXTS["batch"]):
        return catalog_cost(model, tokens, "batch")  # flex: "priced at Batch API rates"
    factor, _ = DISCOUNTS.get((model.provider, tier), (1.0, ""))
    return total * factor


def _tier_source(model: CatalogModel, tier: str) -> str:
    """Where the rate of ``tier`` comes from, for the dry run and the docs."""
    if tier == "standard" or _has_variant(model, _CONTEXTS[tier]):
        return "genai-prices' rate"
    if tier == "flex" and model.provider == "openai" and _has_variant(model, _CONTEXTS["batch"]):
        return "genai-prices' batch rate (OpenAI prices flex at Batch API rates)"
    if (model.provider, tier) in DISCOUNTS:
        factor, source = DISCOUNTS[model.provider, tier]
        return f"standard x {factor:g} ({source})"
    return "no discount known: standard rate"


def _has_variant(model: CatalogModel, context: Mapping[str, str]) -> bool:
    """True when genai-prices has a price variant of ``model`` for ``context`` today."""
    return _variant_today(model.model_ref, model.provider, tuple(sorted(context.items())))


@cache
def _variant_today(model_ref: str, provider: str, context: tuple[tuple[str, str], ...]) -> bool:
    import genai_prices

    found: Any = genai_prices.calc_price(genai_prices.Usage(), model_ref, provider_id=provider)
    now = datetime.now(tz=UTC)
    wanted = dict(context)
    return any(
        variant.when == wanted and (variant.constraint is None or variant.constraint.active(now))
        for variant in found.model.price_variants or ()
    )
