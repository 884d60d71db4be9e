"""``--lanes`` and ``--deadline``: their argparse types and their checks against other flags.

Standard library only: the types run as arguments are parsed.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any

from lc_async_pipelines._text import did_you_mean

__all__ = ["LANES", "deadline", "lane_list", "lanes_flags_problem", "lanes_model_problem"]

LANES = ("batch", "flex", "standard")
"""The lanes ``--lanes`` knows, cheapest first."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def _duration(text: str) -> float | None:
    """``90s``, ``30m``, ``6h``, ``1d`` or ``1h30m`` in seconds; None for anything else."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def deadline(text: str) -> float:
    """An argparse type: ``--deadline`` as a wall-clock time, seconds since the epoch.

    A duration from now (``90s``, ``30m``, ``6h``, ``1d``, ``1h30m``), or an
    ISO 8601 time (``2026-12-07T09:00``; local time without an offset).
    A deadline that is not in the future is an error.
    """
    spelled = text.strip().lower()
    seconds = _duration(spelled)
    now = time.time()
    if seconds is not None:
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is no time at all; give e.g. 30m or 6h")
        return now + seconds
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = (
            "expected a duration (90s, 30m, 6h, 1d) or an ISO time (2026-12-07T09:00), "
            f"got {text!r}"
        )
        raise argparse.ArgumentTypeError(msg) from None
    at = when.timestamp()  # naive: local time
    if at <= now:
        raise argparse.ArgumentTypeError(f"{text} is in the past; give a later time or a duration")
    return at


def lane_list(text: str) -> tuple[str, ...]:
    """An argparse type: ``batch,flex,standard``: known lanes, each once, in the order given."""
    names = [name.strip().lower() for name in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise argparse.ArgumentTypeError(f"expected lanes separated by commas, got {text!r}")
    for name in names:
        if name not in LANES:
            hint = did_you_mean(name, LANES)
            raise argparse.ArgumentTypeError(
                f"unknown lane {name!r}{hint} (lanes: {', '.join(LANES)})"
            )
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise argparse.ArgumentTypeError(f"lane {doubled[0]!r} given twice")
    return tuple(names)


def lanes_flags_problem(args: argparse.Namespace) -> str | None:
    """Why ``--lanes``/``--deadline`` do not go with the other flags, or None when they do."""
    lanes: tuple[str, ...] | None = args.lanes
    if lanes is None:
        return (
            "--deadline goes with --lanes (e.g. --lanes batch,flex,standard)"
            if args.deadline
            else None
        )
    if args.deadline is None:
        return "--lanes needs --deadline (e.g. --deadline 6h): lanes are chosen to meet it"
    if args.deadline <= time.time():
        return "--deadline has passed already"
    if getattr(args, "lane", "standard") != "standard":
        return "--lane gives every item one lane, --lanes chooses per item: give one of them"
    if args.engine == "ray":
        return "--lanes: one process plans the lanes; drop --engine ray"
    if args.batch_api:
        return "--lanes batch is the Batch API lane; drop --batch-api"
    if args.stream and "batch" in lanes:
        return "--stream: batch replies come whole, not as tokens; drop --stream or the batch lane"
    return None


def lanes_model_problem(args: argparse.Namespace, settings: Any) -> str | None:
    """Why the model of ``settings`` cannot run ``--lanes`` (batch, flex: OpenAI's), or None."""
    lanes = getattr(args, "lanes", None) or ()
    if settings.uses_embedded:
        for lane in ("batch", "flex"):
            if lane in lanes:
                return (
                    f"--lanes {lane}: the embedded model has no {lane} tier; "
                    "use an OpenAI endpoint, or --lanes standard"
                )
    if "flex" in lanes and settings.provider not in (None, "openai"):
        return (
            f"--lanes flex: {settings.model} is not an OpenAI model; flex is OpenAI's "
            "service_tier (give -m openai:MODEL or drop flex from --lanes)"
        )
    return None
