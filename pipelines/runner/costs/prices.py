"""Prices, USD per million tokens per model: genai-prices, a file of your own, a call's cost.

:func:`load_prices` gives a :class:`PriceTable` that knows every provider and
model of the ``genai-prices`` package (its bundled data, never fetched at run
time: :mod:`._catalog`), with a file of your own on top (``--prices FILE``),
checking every figure. The one model genai-prices cannot know, the embedded
one, costs nothing (``prices.json`` beside this module). A model neither
knows is unpriced: its records carry ``cost_usd`` null, not $0.

Each call is priced at the tier that answered it (``standard``, ``batch``,
``flex``), its input, cached input (``cache_read``), cache writes
(``cache_creation``) and output apart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner.costs._catalog import (
    CatalogModel,
    catalog_cost,
    catalog_model,
    catalog_version,
)

__all__ = [
    "PRICES_FORMAT",
    "TIERS",
    "ModelPrice",
    "PriceTable",
    "count_tokens",
    "load_prices",
    "tier_of",
    "usage_cost",
]

TIERS = ("standard", "batch", "flex")
"""The tiers a call is priced at."""

PRICES_FORMAT = 1
"""Version of the price file layout."""

_PER = 1_000_000  # prices are per million tokens
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # a dated snapshot: gpt-4o-mini-2024-07-18
_REQUIRED = ("input", "output")
_OPTIONAL = (
    "cached_input",
    "cache_write_input",
    "batch_input",
    "batch_output",
    "batch_cached_input",
    "flex_input",
    "flex_output",
    "flex_cached_input",
)


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
        cache_write_input: input tokens written to the provider's prompt cache
            (Anthropic's ``cache_creation``); by default ``input``.
        flex_input: input tokens at OpenAI's flex tier; by default ``batch_input``
            (flex is "priced at Batch API rates",
            https://platform.openai.com/docs/guides/flex-processing).
        flex_output: output tokens at the flex tier; by default ``batch_output``.
        flex_cached_input: cached input tokens at the flex tier; by default
            ``batch_cached_input``.
        source: where the figures come from (``"genai-prices 0.2.5"``, a file).
        catalog: the genai-prices model that prices a call exactly (its tiered
            prices included); None for figures from a file.
    """

    input: float
    output: float
    cached_input: float
    batch_input: float
    batch_output: float
    batch_cached_input: float
    cache_write_input: float | None = None
    flex_input: float | None = None
    flex_output: float | None = None
    flex_cached_input: float | None = None
    source: str = field(default="", compare=False)
    catalog: CatalogModel | None = field(default=None, compare=False, repr=False)

    def rates(self, tier: str = "standard") -> tuple[float, float, float, float]:
        """Return (input, cached input, cache write, output) at ``tier``, USD per 1M tokens.

        An unknown tier (OpenAI's ``"priority"``) is priced at the standard rates.
        A cache write at the batch or flex tier gets that tier's input discount:
        Anthropic's prompt-caching multipliers stack with its batch discount
        (docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing).
        """
        write = self.input if self.cache_write_input is None else self.cache_write_input
        if tier == "batch":
            return (
                self.batch_input,
                self.batch_cached_input,
                self._discounted(write, self.batch_input),
                self.batch_output,
            )
        if tier == "flex":
            flex_input = self.batch_input if self.flex_input is None else self.flex_input
            return (
                flex_input,
                self.batch_cached_input
                if self.flex_cached_input is None
                else self.flex_cached_input,
                self._discounted(write, flex_input),
                self.batch_output if self.flex_output is None else self.flex_output,
            )
        return (self.input, self.cached_input, write, self.output)

    def _discounted(self, write: float, tier_input: float) -> float:
        """The cache-write rate times the tier's input rate over the standard one."""
        return write * tier_input / self.input if self.input else write


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, with where they come from.

    Attributes:
        models: model name -> :class:`ModelPrice`.
        source: where the figures come from (a URL).
        as_of: the date they were published, ISO 8601.
        note: how they were taken, and how far to trust them.
        catalog: models not in ``models`` are looked up in genai-prices.
    """

    models: Mapping[str, ModelPrice]
    source: str = ""
    as_of: str = ""
    note: str = ""
    catalog: bool = False
    _found: dict[str, ModelPrice | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def price_of(self, model: str | None) -> ModelPrice | None:
        """Return the price of ``model``, or None when the table has none.

        Tried in order: the name as given; without a ``provider:`` prefix
        (``openai:gpt-4o``); without a snapshot date (``gpt-4o-mini-2024-07-18``
        is priced as ``gpt-4o-mini`` unless the table lists the snapshot); a
        name the table lists with a prefix (a reply names ``claude-haiku-4-5``,
        the table ``anthropic:claude-haiku-4-5``, as ``-m`` spells it); then,
        with ``catalog``, genai-prices (its own matching, the prefix as the
        provider: ``anthropic:claude-haiku-4-5``).
        """
        if not model:
            return None
        bare = model.split(":", 1)[-1]
        for name in (model, bare, _DATED.sub("", model), _DATED.sub("", bare)):
            if name in self.models:
                return self.models[name]
        for key, price in self.models.items():
            if ":" in key and key.split(":", 1)[1] in (bare, _DATED.sub("", bare)):
                return price
        if not self.catalog:
            return None
        if model not in self._found:
            self._found[model] = _from_catalog(model)
        return self._found[model]


def _from_catalog(model: str) -> ModelPrice | None:
    """``model``'s price from genai-prices (``provider:name`` or a bare name), or None."""
    provider, _, name = model.rpartition(":")
    found = catalog_model(name, provider or None) if provider else catalog_model(model)
    if found is None and provider:  # "llama3.1:8b": a colon that is no provider
        found = catalog_model(model)
    if found is None:
        return None
    std, batch, flex = (found.rates[tier] for tier in TIERS)
    return ModelPrice(
        input=std[0],
        output=std[3],
        cached_input=std[1],
        batch_input=batch[0],
        batch_output=batch[3],
        batch_cached_input=batch[1],
        cache_write_input=std[2],
        flex_input=flex[0],
        flex_output=flex[3],
        flex_cached_input=flex[1],
        source=f"{found.provider} {found.model_id}; batch: {found.sources['batch']}; "
        f"flex: {found.sources['flex']}",
        catalog=found,
    )


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
        cache_write_input=got.get("cache_write_input"),
        flex_input=got.get("flex_input"),
        flex_output=got.get("flex_output"),
        flex_cached_input=got.get("flex_cached_input"),
        source=where.split(": model ", 1)[0],
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
    """Return genai-prices' prices, with the models of ``path`` added or replacing its own.

    Args:
        path: a JSON file ``{"source": "...", "as_of": "YYYY-MM-DD", "note": "...", "models":
            {"MODEL": {"input": 2.5, "output": 10, "cached_input": 1.25,
            "batch_input": 1.25, "batch_output": 5}}}`` in USD per million
            tokens. ``input`` and ``output`` are required; without its own
            figure, cached input costs ``input``, a cache write
            (``cache_write_input``) ``input``, batch input ``input``, batch
            output ``output``, batch cached input ``batch_input``, and flex
            (``flex_input``, ``flex_output``, ``flex_cached_input``) its batch figure.

    Returns:
        The table: the file's models, then the embedded model at $0 (shipped
        ``prices.json``), then every model genai-prices knows (its bundled data).

    Raises:
        ConfigurationError: the file cannot be read, is not JSON, or a figure is
            missing, unknown, negative or not a number (one line naming the
            file, the model and the field).
    """
    shipped_text = resources.files(__package__ or __name__).joinpath("prices.json").read_text()
    shipped = _parse_table("prices.json (shipped)", shipped_text)
    catalog = f"{catalog_version()} (its bundled data)"
    if path is None:
        return PriceTable(shipped.models, source=catalog, note=shipped.note, catalog=True)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        msg = f"--prices {path}: cannot be read ({reason})"
        raise ConfigurationError(msg) from None
    own = _parse_table(str(path), text)
    source = f"{own.source or path}, over {catalog}"
    return PriceTable(
        {**shipped.models, **own.models},
        source=source,
        as_of=own.as_of,
        note=own.note,
        catalog=True,
    )


def usage_cost(
    price: ModelPrice, usage: Mapping[str, Any], *, batch: bool = False, tier: str | None = None
) -> float:
    """Return the cost in USD of one call's ``usage`` at ``price``.

    Args:
        price: the model's prices.
        usage: LangChain's ``usage_metadata``: ``input_tokens`` (all of them),
            ``output_tokens``, and in ``input_token_details`` the parts of the
            input read from the provider's prompt cache (``cache_read``) and
            written to it (``cache_creation``); langchain-openai names them
            ``flex_cache_read`` and ``flex_cache_creation`` on a flex reply.
        batch: priced as a Batch API call (``tier="batch"``).
        tier: ``"standard"`` (default), ``"batch"`` or ``"flex"``.

    Returns:
        USD: ``(uncached x input + cache read x cached input + cache write x
        cache write + output x output) / 1e6`` at the tier's rates; for a model
        of genai-prices, its own calculation (tiered prices included).
    """
    tier = tier or ("batch" if batch else "standard")
    tokens = _tokens(usage)
    if price.catalog is not None:
        return catalog_cost(price.catalog, tokens, tier)
    rate_in, rate_read, rate_write, rate_out = price.rates(tier)
    read, write = tokens["cache_read"], tokens["cache_creation"]
    uncached = tokens["input_tokens"] - read - write
    total = uncached * rate_in + read * rate_read + write * rate_write
    return (total + tokens["output_tokens"] * rate_out) / _PER


def _tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    """Input, cache read, cache write and output tokens of a usage (the cache ones within input)."""
    tokens_in = count_tokens(usage.get("input_tokens"))
    details = usage.get("input_token_details")
    details = details if isinstance(details, dict) else {}
    read = write = 0
    for key, value in details.items():
        if key == "cache_read" or key.endswith("_cache_read"):
            read = max(read, count_tokens(value))
        elif key == "cache_creation" or key.endswith("_cache_creation"):
            write = max(write, count_tokens(value))
    read = min(read, tokens_in)
    write = min(write, tokens_in - read)
    return {
        "input_tokens": tokens_in,
        "cache_read": read,
        "cache_creation": write,
        "output_tokens": count_tokens(usage.get("output_tokens")),
    }


def tier_of(metadata: Mapping[str, Any]) -> str:
    """Return the tier a reply is priced at, from its ``response_metadata["service_tier"]``.

    ``"batch"`` (the Batch API layer's mark) and ``"flex"`` (OpenAI's echo);
    anything else (``"default"``, ``"auto"``, none) is ``"standard"``.
    """
    tier = metadata.get("service_tier")
    return str(tier) if tier in ("batch", "flex") else "standard"


def count_tokens(value: Any) -> int:
    """Return ``value`` as a token count: a number, else 0."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
