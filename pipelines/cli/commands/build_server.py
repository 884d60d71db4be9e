"""``pipelines build-server``: build and cache llama.cpp's llama-server (once per machine)."""

from __future__ import annotations

import argparse
from typing import Any

from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["add_parser", "build_server"]


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``build-server`` on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser("build-server", help="build and cache llama.cpp's llama-server")
    parser.set_defaults(execute=build_server)


def build_server(args: argparse.Namespace) -> ExitCode:
    """Print the path of llama-server, built first unless it is cached."""
    from lc_async_pipelines._llama_build import build_llama_server, find_llama_server

    print(find_llama_server() or build_llama_server())
    return ExitCode.OK
