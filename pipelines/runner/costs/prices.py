"""Prices, USD per million tokens per model: the shipped table, a file of your own, a call's cost.

The table shipped with the package (``prices.json`` beside this module) says
where its figures come from and when; :func:`load_prices` reads it, and a
file of your own on top of it (``--prices FILE``), checking every figure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lc_async_pipelines.errors import ConfigurationError

__all__ = ["PRICES_FORMAT", "ModelPrice", "PriceTable", "count_tokens", "load_prices", "usage_cost"]

PRICES_FORMAT = 1
"""Version of the price file layout."""

_PER = 1_000_000  # prices are per million tokens
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # a dated snapshot: gpt-4o-mini-2024-07-18
_REQUIRED = ("input", "output")
_OPTIONAL = ("cached_input", "batch_input", "batch_output", "batch_cached_input")


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
    tokens_in = count_tokens(usage.get("input_tokens"))
    tokens_out = count_tokens(usage.get("output_tokens"))
    details = usage.get("input_token_details")
    cached = (
        min(tokens_in, count_tokens(details.get("cache_read"))) if isinstance(details, dict) else 0
    )
    if batch:
        rates = (price.batch_input, price.batch_cached_input, price.batch_output)
    else:
        rates = (price.input, price.cached_input, price.output)
    return ((tokens_in - cached) * rates[0] + cached * rates[1] + tokens_out * rates[2]) / _PER


def count_tokens(value: Any) -> int:
    """Return ``value`` as a token count: a number, else 0."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
