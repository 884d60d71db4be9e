"""Argument parsing shared by the commands: the parser, number types and common flag groups.

Standard library only: every command module registers its flags with these
at import time, before any argument is parsed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = [
    "MAX_WORDS",
    "OneLineErrorParser",
    "add_model_flags",
    "add_shared_flags",
    "count",
    "number",
    "positive_float",
    "positive_int",
    "seconds",
]


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but an argument error is one line and a pointer to --help, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(
    kind: type[int] | type[float],
    minimum: float,
    *,
    strict: bool,
    maximum: float | None = None,
) -> Callable[[str], Any]:
    """An argparse type: a number >= minimum (> minimum when strict), else a one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


MAX_WORDS = 5_000  # about 8,000 tokens: more than any model here writes in one reply
positive_int = number(int, 0, strict=True)
count = number(int, 0, strict=False)
positive_float = number(float, 0, strict=True)
seconds = number(float, 0, strict=False)


def add_shared_flags(group: Any) -> None:
    """--budget, --budget-key, --cache and --cache-ttl: limits and cache shared by runs."""
    group.add_argument(
        "--budget",
        metavar="URL",
        help="share RPM, TPM and 429 pauses with every run using this Redis "
        "(redis://HOST:PORT/DB); default: this run's own, in memory",
    )
    group.add_argument(
        "--budget-key",
        metavar="KEY",
        help="the shared budget's name (default: derived from the endpoint, the model, "
        "--rpm and --tpm: runs at other limits do not share)",
    )
    group.add_argument(
        "--cache",
        metavar="FILE|URL",
        help="LLM cache: identical calls are answered from it, unpaid; an SQLite file, "
        "or redis://HOST:PORT/DB shared by runs",
    )
    group.add_argument(
        "--cache-ttl",
        type=positive_float,
        metavar="S",
        help="seconds a Redis cache entry lives (default: for ever)",
    )


def otlp_url(text: str) -> str:
    """An argparse type: an ``http://`` or ``https://`` OTLP endpoint URL (no path needed)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"expected an http:// or https:// URL, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return text


def add_trace_flag(parser: argparse.ArgumentParser) -> None:
    """--trace URL: OpenTelemetry traces and metrics over OTLP/HTTP (docs/telemetry.md)."""
    parser.add_argument(
        "--trace",
        type=otlp_url,
        metavar="URL",
        help="send OpenTelemetry traces and metrics to this OTLP/HTTP endpoint "
        "(http://localhost:4318); default: as OTEL_EXPORTER_OTLP_ENDPOINT says, "
        "else none. Needs the otel extra",
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The "model" group: -m/--model and --embedded."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "-m",
        "--model",
        help="model name on the configured endpoint, or provider:model for LangChain's "
        "init_chat_model (e.g. openai:gpt-4o-mini); default: PIPELINES_MODEL",
    )
    group.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded model whatever the environment or .env says",
    )
