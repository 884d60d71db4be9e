"""What every request shares: the wired model, the budget, the pipelines and their chains.

One helper, :func:`build_state`, makes the state, whether the model was
injected (:func:`injected_state`, ready at once) or comes from
:func:`~lc_async_pipelines.session.model_session` at startup
(:func:`lifespan`). Each pipeline's chain is built once there, to read its
input's JSON Schema, which the listing shows and every input is checked against.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema
from fastapi import FastAPI, HTTPException, Request
from jsonschema.exceptions import best_match
from langchain_core.runnables import Runnable
from pydantic import SecretStr

from lc_async_pipelines._scrub import register_secret, scrub_url
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.registry import PipelineSpec
from lc_async_pipelines.runner import RateBudget, with_budget
from lc_async_pipelines.service._schemas import PipelineInfo
from lc_async_pipelines.service._settings import ServiceSettings
from lc_async_pipelines.session import model_session

__all__ = [
    "ServedPipeline",
    "ServiceState",
    "build_state",
    "get_state",
    "injected_state",
    "lifespan",
]

log = logging.getLogger("lc_async_pipelines.service")

_KINDS: dict[str, str] = {
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class ServedPipeline:
    """A pipeline as served: its spec, its input's JSON Schema and a validator for it.

    Attributes:
        spec: the registry's spec (``name`` is the served name).
        input_schema: JSON Schema of the chain's input (``{}`` or a bare title
            when the chain does not declare one: anything goes).
        validator: checks an input against ``input_schema``; None when the
            schema is not a valid JSON Schema (then inputs are not checked).
        info: the pipeline as ``GET /v1/pipelines`` lists it.
    """

    spec: PipelineSpec
    input_schema: dict[str, Any]
    validator: Any
    info: PipelineInfo

    @property
    def name(self) -> str:
        """The served name."""
        return self.spec.name

    def too_long(self, value: str | dict[str, Any]) -> str | None:
        """Return why ``value`` is over the pipeline's ``max_input_chars``, or None."""
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) <= self.spec.max_input_chars:
            return None
        as_json = "" if isinstance(value, str) else " (as JSON)"
        return (
            f"has {len(text)} characters{as_json}; the {self.name} pipeline takes at most "
            f"{self.spec.max_input_chars}"
        )

    def type_problem(self, value: str | dict[str, Any]) -> str | None:
        """Return a short reason why ``value`` does not fit the chain's input, or None."""
        if self.validator is None:
            return None
        try:
            error = best_match(self.validator.iter_errors(value))
        except Exception:  # an exotic schema the validator cannot apply: let the chain decide
            return None
        if error is None:
            return None
        if not error.absolute_path and error.validator == "type":
            return f"the {self.name} pipeline takes {self._expected()}, not {_kind_of(value)}"
        if error.validator == "type" and isinstance(error.validator_value, str):
            wanted = _KINDS.get(error.validator_value, error.validator_value)
            message = f"must be {wanted}, not {_kind_of(error.instance)}"
        else:
            message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        where = ".".join(str(p) for p in error.absolute_path)
        detail = f"{where}: {message}" if where else message
        return f"{detail} (the {self.name} pipeline takes {self._expected()})"

    def _expected(self) -> str:
        kind = self.input_schema.get("type")
        if kind == "object" and isinstance(self.input_schema.get("properties"), dict):
            fields = ", ".join(self.input_schema["properties"])
            return f"an object with fields {fields}" if fields else "an object"
        if isinstance(kind, str):
            return _KINDS.get(kind, kind)
        return "an input of its schema"


def _kind_of(value: Any) -> str:
    """Name the JSON kind of ``value``: "a string", "an object", "an array"..."""
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (str, "string"),
        (dict, "object"),
        ((list, tuple), "array"),
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (type(None), "null"),
    ]
    for cls, kind in kinds:
        if isinstance(value, cls):
            return _KINDS[kind]
    return f"a {type(value).__name__}"


@dataclass
class ServiceState:
    """What every request shares.

    Attributes:
        llm: the chat model behind the shared budget, handed to every factory.
        budget: the :class:`RateBudget` every model call draws from.
        settings: the service's settings.
        model: the model's name (``GET /healthz``).
        description: one line naming the model and endpoint (no secret).
        pipelines: name -> served pipeline.
        chains: chains built so far, by pipeline and options.
        in_flight: inputs being run now, over all requests.
        shutting_down: set when the server begins its graceful shutdown
            (:func:`lc_async_pipelines.service.serve`); running work then has
            ``settings.shutdown_grace_s`` to finish, and new requests get 503.
    """

    llm: ChatModel
    budget: RateBudget
    settings: ServiceSettings
    model: str
    description: str
    pipelines: dict[str, ServedPipeline] = field(default_factory=dict)
    chains: dict[tuple[str, tuple[tuple[str, Any], ...]], Runnable[Any, Any]] = field(
        default_factory=dict
    )
    in_flight: int = 0
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)

    def chain(self, spec: PipelineSpec, **options: Any) -> Runnable[Any, Any]:
        """Return the pipeline's chain with ``options`` (built once per distinct options).

        Raises:
            ConfigurationError: an option the pipeline's factory does not take.
        """
        key = (spec.name, tuple(sorted(options.items())))
        if key not in self.chains:
            self.chains[key] = spec.build(self.llm, **options)
        return self.chains[key]


def build_state(
    llm: ChatModel,
    budget: RateBudget,
    settings: ServiceSettings,
    specs: Mapping[str, PipelineSpec],
    *,
    model: str,
    description: str,
) -> ServiceState:
    """Make the shared state: build each pipeline's chain once and read its input schema.

    A pipeline whose factory fails on the model is left out with a warning,
    as the registry leaves out a registration that fails to load.

    Args:
        llm: the chat model, already behind ``budget`` (and cache, fallback).
        budget: the budget behind ``llm``.
        settings: the service's settings.
        specs: served name -> spec.
        model: the model's name, for ``GET /healthz``.
        description: one line naming the model and endpoint, logged here.

    Returns:
        The state, with the default chain of each pipeline cached.
    """
    register_secret(settings.api_token)
    state = ServiceState(llm, budget, settings, model, description)
    for name, spec in specs.items():
        served = spec if spec.name == name else replace(spec, name=name)
        try:
            chain = state.chain(served)
            schema = chain.get_input_jsonschema()
        except Exception as exc:  # a user's factory: any failure leaves only it out
            log.warning("pipeline %r left out: %s: %s", name, type(exc).__name__, exc)
            continue
        state.pipelines[name] = _served(served, schema)
    log.info(
        "serving pipelines %s on %s",
        ", ".join(state.pipelines) or "(none)",
        description,
    )
    return state


def injected_state(
    llm: ChatModel, settings: ServiceSettings, specs: Mapping[str, PipelineSpec]
) -> ServiceState:
    """Make the state around an injected chat model, putting it behind a fresh budget."""
    budget = settings.new_budget()
    register_secret(model_key(llm))
    name = model_name(llm)
    base_url = getattr(getattr(llm, "bound", llm), "openai_api_base", None)
    where = f" at {scrub_url(base_url)}" if base_url else ""
    return build_state(
        with_budget(llm, budget),
        budget,
        settings,
        specs,
        model=name,
        description=f"model {name}{where} (injected)",
    )


def lifespan(
    llm: ChatModel | None,
    settings: ServiceSettings,
    model_settings: ModelSettings | None,
    specs: Mapping[str, PipelineSpec],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Return the app's lifespan: with no injected model, open a model session for its life.

    The session (:func:`~lc_async_pipelines.session.model_session`) wires the
    client and the shared budget, starting the embedded model with
    ``max_in_flight`` slots when no endpoint is set, and stops it at shutdown.
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if llm is not None:  # the state was made with the app
            yield
            return
        chosen = model_settings or ModelSettings.from_env()
        budget = settings.new_budget(chosen.base_url, chosen.model, chosen.tpm_charge)
        async with (
            budget,
            model_session(chosen, budget=budget, parallel=settings.max_in_flight) as session,
        ):
            register_secret(session.settings.api_key)
            app.state.pipelines = build_state(
                session.llm,
                session.budget,
                settings,
                specs,
                model=model_name(session.chat_model),
                description=session.description,
            )
            try:
                yield
            finally:
                app.state.pipelines = None

    return run


def get_state(request: Request) -> ServiceState:
    """Return the app's shared state (a FastAPI dependency).

    Raises:
        HTTPException: 503 before startup has made the state, after shutdown,
            or while the server is shutting down.
    """
    state: ServiceState | None = getattr(request.app.state, "pipelines", None)
    if state is None:
        raise HTTPException(503, "the service is not started (its model session is not open)")
    if state.shutting_down.is_set():
        raise HTTPException(503, "the server is shutting down", headers={"Connection": "close"})
    return state


def model_key(llm: ChatModel) -> SecretStr | None:
    """Return the API key an injected chat model holds (``openai_api_key``), if any."""
    bound = getattr(llm, "bound", llm)
    key = getattr(bound, "openai_api_key", None) or getattr(bound, "api_key", None)
    return key if isinstance(key, SecretStr) else None


def model_name(llm: ChatModel) -> str:
    """Return the model's name, else its class name."""
    bound = getattr(llm, "bound", llm)
    return str(getattr(bound, "model_name", None) or type(bound).__name__)


def _served(spec: PipelineSpec, schema: dict[str, Any]) -> ServedPipeline:
    validator: Any = None
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)
    except Exception:  # not a valid JSON Schema: inputs go to the chain unchecked
        validator = None
    info = PipelineInfo(
        name=spec.name,
        description=spec.description,
        input_label=spec.input_label,
        max_input_chars=spec.max_input_chars,
        options={k: _jsonable(v) for k, v in spec.defaults().items()},
        input_schema=schema,
        example=spec.example,
    )
    return ServedPipeline(spec, schema, validator, info)


def _jsonable(value: Any) -> Any:
    """``value`` when JSON can hold it, else its ``repr`` (a default may be any object)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
