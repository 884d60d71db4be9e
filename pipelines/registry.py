"""The pipelines offered by name: built-in, registered by installed packages, or ``module:attr``.

A pipeline is a factory that takes the chat model and returns a ``Runnable``
(the contract of :func:`~lc_async_pipelines.build_story_chain`). A
:class:`PipelineSpec` names one and says what its input is; its keyword
defaults (``max_words`` and the like) are read from the factory's own
signature, so they live in one place.

Packages offer pipelines through the entry-point group
``lc_async_pipelines.pipelines`` (the built-in ``story`` and ``summary`` of
:mod:`lc_async_pipelines.builtin` are registered the same way, in this
project's ``pyproject.toml``)::

    [project.entry-points."lc_async_pipelines.pipelines"]
    headline = "my_app.chains:build_headline_chain"   # a factory, a PipelineSpec or a Runnable

``pipelines run NAME``, ``pipelines serve`` and ``GET /v1/pipelines`` list
every registered pipeline; ``pipelines run package.module:attr`` runs one that
is not registered.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from lc_async_pipelines._text import did_you_mean
from lc_async_pipelines.errors import ConfigurationError

if TYPE_CHECKING:  # LangChain is imported only when a pipeline is built or loaded
    from langchain_core.runnables import Runnable

__all__ = [
    "ENTRY_POINT_GROUP",
    "PipelineSpec",
    "load_pipeline",
    "registered_pipelines",
]

ENTRY_POINT_GROUP = "lc_async_pipelines.pipelines"

Factory = Callable[..., "Runnable[Any, Any]"]


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline: its factory, and what a command line or service needs to offer it.

    Attributes:
        name: the name it is run and served by (``/v1/pipelines/{name}/...``).
        factory: ``factory(llm, **options) -> Runnable``; ``llm`` is the chat
            model, injected (never built inside).
        description: one line for ``--help``, the page and ``GET /v1/pipelines``.
        input_label: what one input is (``"topic"``, ``"document"``, ``"row"``).
        max_input_chars: longest text input the service accepts, characters.
        owns_model: True when the pipeline is a ready ``Runnable`` holding its
            own model: the run's model, budget and cache cannot be injected.
        splits_long_inputs: True when the pipeline cuts an input longer than the
            model's context into chunks itself (map-reduce), so the runner does
            not cap inputs at the context window.
        example: an example input, shown by the page as its input box's
            placeholder (empty: the page says what ``input_label`` is).
        prompt_tokens: estimated tokens of fixed prompt text every call
            carries besides the input (a ``--prompt`` file's template), counted
            with the input toward ``max_input_tokens`` and the context window.
    """

    name: str
    factory: Factory
    description: str = ""
    input_label: str = "input"
    max_input_chars: int = 200_000
    owns_model: bool = False
    splits_long_inputs: bool = False
    example: str = ""
    prompt_tokens: int = 0

    def defaults(self) -> dict[str, Any]:
        """Return the factory's keyword options and their defaults (e.g. ``{"max_words": 250}``)."""
        try:
            parameters = list(inspect.signature(self.factory).parameters.values())
        except (TypeError, ValueError):  # a builtin or C callable: no options known
            return {}
        return {
            p.name: p.default
            for p in parameters[1:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty
        }

    def build(self, llm: Runnable[Any, Any], **options: Any) -> Runnable[Any, Any]:
        """Return the pipeline's chain on ``llm``, with ``options`` over the defaults.

        Raises:
            ConfigurationError: an option the factory does not take.
        """
        unknown = sorted(set(options) - set(self.defaults()))
        if unknown:
            takes = ", ".join(self.defaults()) or "no options"
            msg = f"pipeline {self.name!r} takes no option {unknown[0]!r} (it takes: {takes})"
            raise ConfigurationError(msg)
        return self.factory(llm, **options)


def _as_spec(name: str, value: Any, where: str) -> PipelineSpec:
    """Turn a loaded object into a spec: a spec, a ready ``Runnable``, or a factory."""
    from langchain_core.runnables import Runnable

    if isinstance(value, PipelineSpec):
        return value
    if isinstance(value, Runnable):
        runnable = value

        def ready(llm: Runnable[Any, Any]) -> Runnable[Any, Any]:
            return runnable

        return PipelineSpec(name, ready, description=f"{where} (a ready Runnable)", owns_model=True)
    if callable(value):
        try:
            parameters = list(inspect.signature(value).parameters.values())
        except (TypeError, ValueError):
            parameters = []
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not positional:
            msg = f"{where} is a callable that takes no chat model argument"
            raise ConfigurationError(msg)
        doc = (inspect.getdoc(value) or "").split("\n", 1)[0]
        return PipelineSpec(name, value, description=doc or where)
    msg = f"{where} is a {type(value).__name__}, not a Runnable or a factory taking the chat model"
    raise ConfigurationError(msg)


def _failure(exc: BaseException) -> str:
    """One line for a user module's failure; ``sys.exit()`` on import is one, not our exit."""
    if isinstance(exc, SystemExit):  # would end the command with its code and nothing done
        return f"it called sys.exit({exc.code!r}) while importing"
    return f"{type(exc).__name__}: {exc}"


def _load_entry(ep: EntryPoint) -> PipelineSpec:
    """Load one registration as a spec named after its entry point.

    Raises:
        ConfigurationError: it does not import, or is not a spec, factory or Runnable.
    """
    where = f"entry point {ep.name} = {ep.value}"
    try:
        loaded = ep.load()
    except (Exception, SystemExit) as exc:  # a broken plug-in: say which, and why
        msg = f"pipeline {ep.name!r} ({ep.value}) does not load: {_failure(exc)}"
        raise ConfigurationError(msg) from None
    spec = _as_spec(ep.name, loaded, where)
    return spec if spec.name == ep.name else dataclasses.replace(spec, name=ep.name)


# The same entry points as pyproject.toml's, in its order, for a source tree
# run without installed metadata. Built-ins load as plug-ins do, by name: the
# registry sits below the pipelines it lists and never imports them.
_BUILTIN_ENTRY_POINTS = tuple(
    EntryPoint(name, f"lc_async_pipelines.builtin:{name.upper()}", ENTRY_POINT_GROUP)
    for name in ("story", "summary", "news")
)
_BUILTIN_ORDER = {ep.name: i for i, ep in enumerate(_BUILTIN_ENTRY_POINTS)}


def _builtins() -> dict[str, PipelineSpec]:
    """The built-ins, for a source tree run without installed metadata."""
    return {ep.name: _load_entry(ep) for ep in _BUILTIN_ENTRY_POINTS}


@cache
def registered_pipelines() -> dict[str, PipelineSpec]:
    """Return every pipeline registered in the ``lc_async_pipelines.pipelines`` entry-point group.

    In a fixed order: the built-ins first (story, summary, news), then the
    others by name; the page opens on the first. Loaded once per process. A
    registration that fails to load is left out with a warning on stderr
    rather than breaking every other pipeline.
    """
    specs: dict[str, PipelineSpec] = {}
    groups = entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(
        groups, key=lambda e: (_BUILTIN_ORDER.get(e.name, len(_BUILTIN_ORDER)), e.name)
    ):
        try:
            specs[ep.name] = _load_entry(ep)
        except ConfigurationError as exc:  # a broken plug-in must not break the others
            print(f"pipelines: warning: {exc}; left out", file=sys.stderr)
    return specs or _builtins()


def load_pipeline(target: str) -> PipelineSpec:
    """Return the pipeline named ``target``, or load ``package.module:attr``.

    ``attr`` is a :class:`PipelineSpec`, a factory taking the chat model, or a
    ready ``Runnable`` (which keeps its own model). The working directory is
    importable, as for ``python -m``.

    Raises:
        ConfigurationError: no such registered name, the module does not
            import (an exception, or ``sys.exit()`` called while importing:
            issue 22 saw exit 0 with nothing done), the attribute is missing
            or of the wrong kind.
    """
    if ":" not in target:
        # Names first: loading an entry point imports its module (and LangChain).
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if target in found:
            return _load_entry(found[target])
        builtin = {ep.name: ep for ep in _BUILTIN_ENTRY_POINTS}
        if not found and target in builtin:
            return _load_entry(builtin[target])
        names = sorted(found) or sorted(builtin)
        msg = f"no pipeline {target!r}{did_you_mean(target, names)}; registered: "
        msg += f"{', '.join(names)} (or give package.module:attr)"
        raise ConfigurationError(msg)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        msg = f"{target!r} is not of the form package.module:attr"
        raise ConfigurationError(msg)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the user's module: any failure is a bad target
        msg = f"cannot import {module_name!r} for {target!r}: {_failure(exc)}"
        raise ConfigurationError(msg) from exc
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            msg = f"{module_name!r} has no attribute {attr!r}"
            raise ConfigurationError(msg)
        value = getattr(value, part)
    return _as_spec(attr.rsplit(".", 1)[-1], value, target)
