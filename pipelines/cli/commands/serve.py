"""``pipelines serve``: the pipelines over HTTP; ``pipelines serve-model``: the embedded model."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from lc_async_pipelines.cli._args import add_model_flags, add_trace_flag, number, positive_int
from lc_async_pipelines.cli._checks import chain_input_shape, check_model_key, fail_usage
from lc_async_pipelines.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from lc_async_pipelines.registry import PipelineSpec

__all__ = ["add_model_parser", "add_parser", "serve_model", "serve_pipelines"]

_PIPELINE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``serve`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser(
        "serve",
        help="serve the pipelines over HTTP: API, SSE streams, a page",
        description="Serve every registered pipeline (and --pipeline ones) over HTTP: "
        "invoke, SSE stream and batch endpoints, and a page. Needs the service extra: "
        "pip install 'lc-async-pipelines[service]'.",
        epilog="example:\n  pipelines serve --port 8000 --pipeline headline=my_app.chains:build",
        formatter_class=formatter,
    )
    parser.set_defaults(execute=serve_pipelines)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=number(int, 0, strict=False, maximum=65_535), default=8000, help="port"
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="serve this pipeline too (repeatable)",
    )
    add_model_flags(parser)
    add_trace_flag(parser)


def add_model_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``serve-model`` and its flags on the ``pipelines`` subparsers ``sub``."""
    parser = sub.add_parser("serve-model", help="serve the embedded model until interrupted")
    parser.set_defaults(execute=serve_model)
    parser.add_argument(
        "--port",
        type=number(int, 0, strict=True, maximum=65_535),
        help="loopback port (default: a free one)",
    )
    parser.add_argument("--parallel", type=positive_int, default=4, help="server slots (default 4)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for decoding (default: PIPELINES_EMBEDDED_THREADS, else llama.cpp's "
        "choice); 1 is often much faster on cores shared with other work",
    )


def serve_pipelines(args: argparse.Namespace) -> ExitCode:
    """Run ``pipelines serve`` until the server stops."""
    import logging

    try:
        from lc_async_pipelines.service import ServiceSettings, create_app, serve
    except ImportError as exc:
        fail_usage(
            f"pipelines serve needs the service extra ({exc.name} is missing): "
            "pip install 'lc-async-pipelines[service]'"
        )
    from lc_async_pipelines.models import ModelSettings

    specs = _served_pipelines(args.pipeline)
    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    check_model_key(settings)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lc_async_pipelines").setLevel(logging.INFO)
    service_settings = ServiceSettings.from_env()
    if service_settings.budget_url is not None:  # unreachable: exit 2 now, not at startup
        import asyncio

        async def reachable() -> None:
            async with service_settings.new_budget(
                settings.base_url, settings.model, settings.tpm_charge
            ):
                pass

        asyncio.run(reachable())
    app = create_app(settings=service_settings, model_settings=settings, pipelines=specs)
    print(f"page and API at http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    serve(app, host=args.host, port=args.port, settings=service_settings)
    return ExitCode.OK


def _served_pipelines(entries: list[str]) -> dict[str, PipelineSpec]:
    """The registered pipelines, and the --pipeline NAME=MODULE:ATTR ones over them."""
    import dataclasses
    import re

    from lc_async_pipelines.registry import load_pipeline, registered_pipelines

    specs = dict(registered_pipelines())
    for entry in entries:
        name, sep, target = entry.partition("=")
        if not sep or not re.fullmatch(_PIPELINE_NAME, name) or ":" not in target:
            fail_usage(
                f"--pipeline {entry!r}: expected NAME=package.module:attr, "
                "NAME of letters, digits, '_', '-', '.'"
            )
        if name in specs:
            print(
                f"pipelines: warning: --pipeline {name} replaces the registered one",
                file=sys.stderr,
            )
        spec = dataclasses.replace(load_pipeline(target), name=name)
        chain_input_shape(spec, {})  # a factory that fails, or returns no Runnable: exit 2 now
        specs[name] = spec
    return specs


def serve_model(args: argparse.Namespace) -> ExitCode:
    """Run ``pipelines serve-model``: the embedded model on loopback until a signal stops it.

    Raises:
        ConfigurationError: no ``--threads`` and a bad ``PIPELINES_EMBEDDED_THREADS``
            (or another bad model setting: they are read together).
        EmbeddedModelError: the server cannot start.
    """
    import contextlib
    import threading

    from lc_async_pipelines.cli._signals import stop_thread_on_signals
    from lc_async_pipelines.embedded import EmbeddedModelServer

    threads = args.threads
    if threads is None:
        from lc_async_pipelines.models import ModelSettings

        threads = ModelSettings.from_env().embedded_threads
    server = EmbeddedModelServer(parallel=args.parallel, port=args.port, threads=threads)
    stop = threading.Event()
    with stop_thread_on_signals(stop):
        # a second signal raises KeyboardInterrupt here: the server is stopped at once
        with contextlib.suppress(KeyboardInterrupt):
            with server:
                print(f"embedded model at {server.base_url}", flush=True)
                print(f"share it: export PIPELINES_EMBEDDED_URL={server.base_url}", flush=True)
                while not stop.wait(1.0) and server.running:
                    pass
    return ExitCode.OK  # a server stopped by a signal has done its job (as before the split)
