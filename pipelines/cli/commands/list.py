"""``pipelines list``: the registered pipelines and their options."""

from __future__ import annotations

import argparse
from typing import Any

from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["add_parser", "list_pipelines"]


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``list`` on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser("list", help="list the registered pipelines and their options")
    parser.set_defaults(execute=list_pipelines)


def list_pipelines(args: argparse.Namespace) -> ExitCode:
    """Print each registered pipeline: name, description, input and options."""
    from lc_async_pipelines.registry import registered_pipelines

    for name, spec in registered_pipelines().items():
        options = ", ".join(f"{k}={v!r}" for k, v in spec.defaults().items())
        print(f"{name:12} {spec.description}")
        print(f"{'':12} input: {spec.input_label}; options: {options or 'none'}")
    return ExitCode.OK
