"""Checks of numeric options: one clear ``ConfigurationError`` naming the option."""

from __future__ import annotations

import math

from lc_async_pipelines.errors import ConfigurationError

__all__ = ["check_number"]


def check_number(
    name: str, value: float | None, *, minimum: float, strict: bool = False, whole: bool = False
) -> None:
    """Raise :class:`ConfigurationError` naming ``name`` unless ``value`` is a number in range.

    None passes (the option is unset). ``whole``: an ``int`` is required.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number, got {type(value).__name__}"
        raise ConfigurationError(msg)
    if whole and not isinstance(value, int):
        msg = f"{name} must be a whole number, got {value!r}"
        raise ConfigurationError(msg)
    if not math.isfinite(value):
        msg = f"{name} must be a finite number, got {value!r}"
        raise ConfigurationError(msg)
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        msg = f"{name} must be {bound}, got {value!r}"
        raise ConfigurationError(msg)
