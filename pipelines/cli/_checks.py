"""Checks shared by the commands: the usage error, paths, shared-service URLs, pipelines, model.

A check that fails raises :class:`UsageError` (exit 2) before anything is
written or any model server starts. The path and URL checks use the standard
library only, so a wrong path answers before LangChain loads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import PipelineSpec

__all__ = [
    "UsageError",
    "chain_input_shape",
    "check_collector",
    "check_model_key",
    "check_name_lengths",
    "check_paths",
    "check_regular_file",
    "check_shared_urls",
    "fail_usage",
    "model_identity",
]


class UsageError(Exception):
    """An argument that parses but does not fit the others; exit 2."""


def fail_usage(message: str) -> NoReturn:
    """Stop the command with a usage error (exit 2) saying ``message``."""
    raise UsageError(message)


_SQLITE_MAGIC = b"SQLite format 3\x00"

# The longest suffix a run adds to --output's name: a restart's backup of a
# sidecar, OUTPUT.bak-YYYYmmdd-HHMMSS-NNNN.records.jsonl (a staged rewrite,
# OUTPUT.records.jsonl.tmp, is shorter).
_OUTPUT_NAME_ROOM = len(".bak-20260101-000000-9999.records.jsonl")
_SQLITE_NAME_ROOM = len("-journal")  # SQLite's files beside a --cache file
_NAME_MAX = 255  # when the file system does not say (os.pathconf)


def check_paths(
    args: argparse.Namespace, flag: str = "--input", kinds: str = "a .jsonl, .json, .csv or .txt"
) -> None:
    """Standard-library checks of the input (``flag``), --output and --cache; no change."""
    if str(args.input) == "-" or str(args.output) == "-":
        fail_usage(
            f"standard input and output are not supported; give files for {flag} and --output"
        )
    check_name_lengths(flag, args.input)
    check_name_lengths("--output", args.output, room=_OUTPUT_NAME_ROOM)
    if args.cache is not None and "://" not in args.cache:
        check_name_lengths("--cache", Path(args.cache), room=_SQLITE_NAME_ROOM)
    if args.input.is_dir():
        fail_usage(f"{flag} {args.input}: is a folder; give {kinds} file")
    check_regular_file(flag, args.input)
    for other in ("prompt", "schema"):
        given = getattr(args, other, None)
        if given is not None and not _names_a_module(str(given)):
            check_regular_file(f"--{other}", Path(given))
    _check_output(args, flag)
    check_shared_urls(args)
    if args.cache is not None and "://" not in args.cache:
        _check_cache_file(args, flag)


def check_regular_file(flag: str, path: Path) -> None:
    """``path`` is a regular file: not missing, not a folder, a device or a pipe.

    ``/dev/zero`` as an input would be read for ever, a FIFO would block the
    read (issue 22, point 3).
    """
    check_name_lengths(flag, path)
    if not path.exists():
        fail_usage(f"{flag} {path}: no such file")
    if path.is_dir():
        fail_usage(f"{flag} {path}: is a folder; give a file")
    if not path.is_file():
        fail_usage(f"{flag} {path}: not a regular file (a device, a pipe or a socket)")


def check_name_lengths(flag: str, path: Path, room: int = 0) -> None:
    """Every name in ``path`` fits the file system's limit, the file's own with ``room`` to spare.

    A name over the limit (255 bytes on most file systems, ``os.pathconf``
    ``PC_NAME_MAX``) made ``stat`` raise, a traceback (issue 22, point 9);
    ``room`` is what the command adds to the file's name for the files it
    writes beside it.
    """
    limit = _name_max(path)
    for part in path.parts[:-1]:
        if len(os.fsencode(part)) > limit:
            fail_usage(f"{flag}: a folder name of {len(os.fsencode(part))} bytes; at most {limit}")
    size = len(os.fsencode(path.name))
    if size + room > limit:
        shown = path.name if len(path.name) <= 40 else path.name[:40] + "..."
        beside = f" (the files beside it add {room})" if room else ""
        fail_usage(f"{flag} {shown}: the file name is {size} bytes; at most {limit - room}{beside}")


def _name_max(path: Path) -> int:
    """The longest file name, in bytes, of the file system ``path`` would be on."""
    for folder in path.absolute().parents:
        if os.path.isdir(folder):  # False, not an error, for a name too long
            try:
                return os.pathconf(folder, "PC_NAME_MAX")
            except (OSError, ValueError):
                break
    return _NAME_MAX


def _names_a_module(spec: str) -> bool:
    """``--schema package.module:Model`` rather than a file (a file of that name wins)."""
    return ":" in spec and not Path(spec).exists()


def _check_output(args: argparse.Namespace, flag: str) -> None:
    """--output: a file, not the input, under a folder (or a path that can become one)."""
    if args.output.is_dir():
        fail_usage(
            f"--output {args.output}: is a folder; give a file, e.g. {args.output}/out.jsonl"
        )
    if args.output.resolve() == args.input.resolve():
        fail_usage(f"--output is the {flag} file; give another file for the records")
    for parent in args.output.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                fail_usage(f"--output {args.output}: {parent} is a file, not a folder")
            break


def _check_cache_file(args: argparse.Namespace, flag: str) -> None:
    """An SQLite --cache: its own file, new or already an SQLite database."""
    cache_file = Path(args.cache)
    cache = cache_file.resolve()
    if cache in (args.output.resolve(), args.input.resolve()):
        fail_usage(f"--cache {args.cache}: is the {flag} or --output file; give its own file")
    if cache_file.is_dir():
        fail_usage(f"--cache {args.cache}: is a folder; give a file, e.g. {args.cache}/llm.sqlite")
    if cache_file.is_file() and cache_file.stat().st_size:
        with cache_file.open("rb") as fh:
            if fh.read(16) != _SQLITE_MAGIC:
                fail_usage(f"--cache {args.cache}: is not an SQLite file; give a new or cache file")


def check_collector(url: str, timeout_s: float = 3.0) -> None:
    """--trace URL: something must accept a connection there, else exit 2 now.

    The OTLP exporter would otherwise retry in the background and hold the
    run's exit for its timeout, printing a warning a retry (issue 20).
    """
    import socket
    from urllib.parse import urlsplit

    from lc_async_pipelines._scrub import scrub

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        fail_usage(f"--trace {scrub(url)}: no collector answers there ({reason})")


def check_shared_urls(args: argparse.Namespace) -> None:
    """--budget and --cache URLs: a Redis scheme; --cache-ttl only with a Redis cache."""
    from lc_async_pipelines._scrub import scrub
    from lc_async_pipelines.runner.redis_client import is_redis_url

    if args.budget is not None and not is_redis_url(args.budget):
        fail_usage(f"--budget {scrub(args.budget)!r}: give a redis://HOST:PORT/DB URL")
    cache = args.cache or ""
    if "://" in cache and not is_redis_url(cache):
        fail_usage(f"--cache {scrub(cache)!r}: give an SQLite file or a redis://HOST:PORT/DB URL")
    if args.cache_ttl is not None and "://" not in cache:
        fail_usage("--cache-ttl: only a Redis cache (--cache redis://...) expires its entries")
    if args.budget_key is not None and args.budget is None:
        fail_usage("--budget-key goes with --budget")


def chain_input_shape(
    spec: PipelineSpec, options: dict[str, Any]
) -> tuple[bool, list[str], list[str] | None]:
    """Build the chain on a stand-in model: whole rows?, required fields, the fields it reads."""
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.runnables import Runnable

    from lc_async_pipelines.errors import ConfigurationError

    try:
        chain = spec.build(FakeListChatModel(responses=["."]), **options)
    except ConfigurationError:
        raise
    except (Exception, SystemExit) as exc:  # the user's factory: any failure is a bad target
        why = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
        msg = f"pipeline {spec.name!r}: the factory failed: {why}: {exc}"
        raise ConfigurationError(msg) from None
    if not isinstance(chain, Runnable):
        msg = (
            f"pipeline {spec.name!r}: the factory returned a {type(chain).__name__}, not a Runnable"
        )
        raise ConfigurationError(msg)
    try:
        schema = chain.get_input_jsonschema()
    except Exception:  # a user chain whose input type has no JSON schema: take text
        return False, [], None
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties")
        reads = (
            [str(k) for k in properties] if isinstance(properties, dict) and properties else None
        )
        return True, [str(r) for r in schema.get("required", [])], reads
    return False, [], None


def check_model_key(settings: ModelSettings) -> None:
    """An ``anthropic:`` model needs ANTHROPIC_API_KEY: its client fails each call without one.

    Raises:
        UsageError: the model is ``anthropic:`` and no key is set (exit 2).
    """
    if settings.provider == "anthropic" and not settings.api_key:
        fail_usage(f"-m {settings.model}: no key; set ANTHROPIC_API_KEY (environment or .env)")


def model_identity(args: argparse.Namespace, spec: PipelineSpec, settings: ModelSettings) -> str:
    """The model as the manifest records it: stable across sessions (no port, no key source)."""
    from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME
    from lc_async_pipelines.models import OPENAI_URL

    if spec.owns_model:
        return "the Runnable's own model"
    if settings.uses_embedded:
        if args.model and args.embedded:
            fail_usage(f"-m {args.model}: --embedded runs the embedded model; drop one of them")
        if args.model and settings.provider is None:
            fail_usage(
                f"-m {args.model}: no endpoint is configured (OPENAI_BASE_URL or "
                "OPENAI_API_KEY), so the embedded model would run; set one or drop -m"
            )
        return f"{EMBEDDED_MODEL_NAME} (embedded)"
    if settings.provider not in (None, "openai"):
        return f"{settings.provider}:{settings.model_name}"
    from lc_async_pipelines._scrub import scrub_url

    name = settings.model_name or "(asked of the endpoint)"
    return f"{name} at {scrub_url(settings.base_url or OPENAI_URL)}"  # a password, a ?key=
