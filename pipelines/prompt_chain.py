"""Chains from a user's prompt file and output schema (``pipelines run --prompt FILE --schema S``).

:func:`build_prompt_chain` follows the pipeline contract: it takes the chat
model and returns a ``Runnable`` whose input is a row (an object whose fields
fill the prompt's variables) and whose output is the reply's text, or, with a
schema, the JSON object the model was constrained to produce.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.load import loads
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import (
    BasePromptTemplate,
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    PromptTemplate,
    SystemMessagePromptTemplate,
)
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableSequence
from pydantic import BaseModel

from lc_async_pipelines._lambdas import inline
from lc_async_pipelines._text import estimate_tokens
from lc_async_pipelines._types import ChatModel
from lc_async_pipelines.errors import ConfigurationError, OutputValidationError, RowError

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "Schema",
    "build_prompt_chain",
    "load_prompt_file",
    "load_schema",
    "structured_output",
    "template_tokens",
]

Schema = dict[str, Any] | type[BaseModel]
"""A JSON Schema (an object) or a Pydantic model class."""

# What a serialized prompt file may construct: prompt templates only, never
# arbitrary classes (langchain_core.load is given this allow-list).
_PROMPT_CLASSES: list[type[Any]] = [
    ChatPromptTemplate,
    PromptTemplate,
    HumanMessagePromptTemplate,
    SystemMessagePromptTemplate,
]
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")

#: The deepest nesting of objects and arrays a ``--schema`` file may have. Real
#: schemas stay within a few dozen levels; the validator, the model's
#: structured-output request and the JSON encoder recurse once per level, so a
#: schema nested thousands deep would end the run in a ``RecursionError``.
MAX_SCHEMA_DEPTH = 100


def load_prompt_file(path: str | Path) -> BasePromptTemplate[Any]:
    """Read a prompt template from ``path``.

    Formats: LangChain's serialization (a JSON file written by
    ``langchain_core.load.dumps``); the older LangChain prompt files (JSON or
    YAML with ``_type``, read by ``langchain_core.prompts.load_prompt``, which
    LangChain deprecated in 1.2.21); anything else is plain text, one human
    message with ``{variable}`` placeholders (``{{`` and ``}}`` for literal braces).

    Returns:
        The template; ``input_variables`` names what each row must hold.

    Raises:
        ConfigurationError: the file is missing, unreadable, not a prompt, or has no variable.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigurationError(f"--prompt {path}: is a folder; give a prompt file")
    if not path.is_file():
        raise ConfigurationError(f"--prompt {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"--prompt {path}: cannot read ({type(exc).__name__})") from None
    prompt: Any
    try:
        if path.suffix.lower() in (".yaml", ".yml") or (
            path.suffix.lower() == ".json" and '"_type"' in text
        ):
            from langchain_core.prompts import load_prompt

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated in 1.2.21, still LangChain's format
                prompt = load_prompt(path)
        elif path.suffix.lower() == ".json":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loads() is marked beta
                prompt = loads(text, allowed_objects=_PROMPT_CLASSES)
        else:
            prompt = ChatPromptTemplate.from_template(text)
    except ConfigurationError:
        raise
    except Exception as exc:  # a malformed file: any parse error is the user's to fix
        msg = f"--prompt {path}: not a prompt template ({type(exc).__name__}: {exc})"
        raise ConfigurationError(msg) from None
    if not isinstance(prompt, BasePromptTemplate):
        msg = f"--prompt {path}: holds a {type(prompt).__name__}, not a prompt template"
        raise ConfigurationError(msg)
    if not prompt.input_variables:
        msg = f"--prompt {path}: the template has no {{variable}} for the rows to fill"
        raise ConfigurationError(msg)
    return prompt


def template_tokens(prompt: BasePromptTemplate[Any]) -> int:
    """Estimate the tokens of ``prompt``'s own text: every call carries them besides the row.

    The template is rendered with every variable empty and its messages'
    text counted (3.5 characters a token, :func:`lc_async_pipelines._text.estimate_tokens`).
    A template that does not render so (a messages placeholder) counts its
    template strings instead.
    """
    try:
        value = prompt.invoke(dict.fromkeys(prompt.input_variables, ""))
        return sum(estimate_tokens(m.text) for m in value.to_messages())
    except Exception:  # a variable that wants a list, not text: count the raw template
        templates = [getattr(prompt, "template", "")]
        for message in getattr(prompt, "messages", []):
            inner = getattr(message, "prompt", None)
            templates.append(getattr(inner, "template", ""))
        return sum(estimate_tokens(t) for t in templates if isinstance(t, str))


def load_schema(spec: str | Path) -> Schema:
    """Read an output schema: a JSON Schema file, or ``package.module:Model`` (Pydantic).

    Raises:
        ConfigurationError: the file is missing, not a valid JSON Schema
            object, or nested deeper than :data:`MAX_SCHEMA_DEPTH`; the module
            or class cannot be imported (or calls ``sys.exit()``) or is not a
            Pydantic model.
    """
    text = str(spec)
    if ":" in text and not Path(text).exists():
        module_name, _, attr = text.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # as for a module:attr target
        try:
            value: Any = getattr(importlib.import_module(module_name), attr)
        except (Exception, SystemExit) as exc:  # the user's module: any failure is a bad --schema
            why = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
            msg = f"--schema {text}: cannot load ({why}: {exc})"
            raise ConfigurationError(msg) from None
        if not (isinstance(value, type) and issubclass(value, BaseModel)) or not value.model_fields:
            raise ConfigurationError(f"--schema {text}: not a Pydantic model class with fields")
        return value
    path = Path(text)
    schema = _read_json(path)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigurationError(f'--schema {path}: must be a JSON Schema with "type": "object"')
    if not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise ConfigurationError(f'--schema {path}: must name its fields under "properties"')
    import jsonschema  # only for a --schema: its import costs start-up of every run

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigurationError(f"--schema {path}: invalid JSON Schema ({exc.message})") from None
    schema.setdefault("title", path.stem.replace("-", "_") or "Output")
    return schema


def _read_json(path: Path) -> Any:
    """The JSON document of a ``--schema`` file, no deeper than :data:`MAX_SCHEMA_DEPTH`."""
    if not path.is_file():
        raise ConfigurationError(f"--schema {path}: no such file")
    try:
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"--schema {path}: not JSON ({type(exc).__name__})"
        raise ConfigurationError(msg) from None
    except RecursionError:  # the decoder recurses once per level
        msg = f"--schema {path}: nested more than {MAX_SCHEMA_DEPTH} levels deep"
        raise ConfigurationError(msg) from None
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        msg = f"--schema {path}: nested {depth} levels deep, more than {MAX_SCHEMA_DEPTH} levels"
        raise ConfigurationError(msg)
    return schema


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (0 for a scalar), without recursing."""
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            level.extend((child, depth + 1) for child in node)
    return deepest


def _validated(schema: Schema, value: Any) -> Any:
    """Check a parsed output against ``schema``; raise :class:`OutputValidationError`."""
    if isinstance(schema, dict):
        import jsonschema

        errors = sorted(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(value),
            key=lambda e: list(e.path),
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            msg = f"output does not fit the schema at {where}: {errors[0].message}"
            raise OutputValidationError(msg[:500])
        return value
    if isinstance(value, schema):
        return value
    try:
        return schema.model_validate(value)
    except ValueError as exc:
        raise OutputValidationError(f"output does not fit {schema.__name__}: {exc}"[:500]) from None


def _parse_text(schema: Schema, message: BaseMessage) -> Any:
    text = _FENCE.sub("", message.text.strip())
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputValidationError(f"output is not JSON: {exc.msg} at {exc.pos}") from None
    return _validated(schema, value)


def structured_output(
    llm: ChatModel, schema: Schema, **model_kwargs: Any
) -> Runnable[LanguageModelInput, Any]:
    """Constrain ``llm``'s replies to ``schema``; return the parsed, validated object.

    Uses the model's ``with_structured_output(schema, method="json_schema")``:
    OpenAI's structured outputs, and on the embedded llama-server its JSON
    Schema constrained decoding (``response_format``), so output parses. Every
    output is validated against the schema (``jsonschema`` for a JSON Schema,
    Pydantic for a model). A model without that method (a test fake) is asked
    plainly and its text parsed as JSON.

    Args:
        llm: the chat model.
        schema: a JSON Schema object or a Pydantic model class.
        **model_kwargs: passed to the model with every call (``max_tokens=``);
            ``llm.bind(...)`` would not survive ``with_structured_output``.

    Returns:
        ``Runnable[LanguageModelInput, dict | BaseModel]``.

    Raises:
        OutputValidationError: on invocation, the output is not JSON or does
            not fit; the runner retries it, then records it as the item's error.
    """
    method = getattr(llm, "with_structured_output", None)
    structured: Runnable[LanguageModelInput, Any] | None = None
    # A Pydantic model goes to the model as its JSON Schema and is validated
    # here: given the class, langchain-openai parses through the SDK, which
    # warns on every call (langchain-ai/langchain#35538) and raises on a reply
    # cut by max_tokens instead of leaving it to the retry of a bad output.
    wire = schema if isinstance(schema, dict) else schema.model_json_schema()
    if callable(method):
        try:
            structured = method(wire, method="json_schema", include_raw=True, **model_kwargs)
        except NotImplementedError:
            structured = None
        except ValueError:
            # langchain-core's generic with_structured_output takes no model
            # kwargs; without them it says whether the model has one at all.
            if not model_kwargs:
                raise
            try:
                structured = method(wire, method="json_schema", include_raw=True)
            except NotImplementedError:
                structured = None
            else:
                msg = f"{type(llm).__name__}.with_structured_output takes no {sorted(model_kwargs)}"
                raise ConfigurationError(msg) from None
    if structured is None:
        plain = llm.bind(**model_kwargs) if model_kwargs else llm
        return plain | inline(lambda m: _parse_text(schema, m), name="parse_json")

    async def cut_is_bad_output(value: LanguageModelInput, config: RunnableConfig) -> Any:
        import openai  # a dependency; imported here to keep this module's import light

        assert structured is not None
        try:
            return await structured.ainvoke(value, config)
        except openai.LengthFinishReasonError as exc:
            # A reply cut by max_tokens is a bad sample, retried like any bad output.
            msg = f"output cut at max_tokens before its JSON closed ({type(exc).__name__})"
            raise OutputValidationError(msg) from None

    def check(result: Mapping[str, Any]) -> Any:
        if result.get("parsing_error") is not None or result.get("parsed") is None:
            raw = result.get("raw")
            if isinstance(raw, BaseMessage):
                return _parse_text(schema, raw)
            raise OutputValidationError(f"output did not parse: {result.get('parsing_error')}")
        return _validated(schema, result["parsed"])

    sampled = RunnableLambda(cut_is_bad_output, name="structured_output")
    return sampled | inline(check, name="validate_output")


def build_prompt_chain(
    llm: ChatModel,
    prompt: BasePromptTemplate[Any],
    *,
    schema: Schema | None = None,
) -> Runnable[dict[str, Any], Any]:
    """Build ``prompt | llm | parser`` for rows whose fields fill the prompt's variables.

    Args:
        llm: the chat model (injected, never built here).
        prompt: the template; its ``input_variables`` are read from each row.
        schema: with it, the output is the JSON object (or Pydantic model) the
            model was constrained to (:func:`structured_output`); without, the text.

    Returns:
        ``Runnable[dict, str | dict | BaseModel]``: a row in, the output out.

    Raises:
        RowError: on invocation, a row lacks a variable; the message names
            the missing variables and the fields the row has.
    """
    head = _RowPrompt(prompt)
    tail: list[Runnable[Any, Any]]
    tail = [llm, StrOutputParser()] if schema is None else [structured_output(llm, schema)]
    # named, not wrapped: a binding around the sequence is one more layer on every call
    return RunnableSequence(head, *tail, name="prompt")


class _RowPrompt(Runnable[Any, PromptValue]):
    """``prompt`` fed from a row, its variables checked first.

    A delegate, not a run of its own: the check adds no callback events to
    a call (a ``RunnableLambda`` in front of the prompt cost about 0.2 ms of
    CPU a call, ``benchmarks/overhead.py``). Its input schema is the prompt's.
    """

    def __init__(self, prompt: BasePromptTemplate[Any]) -> None:
        self.prompt = prompt
        self.wanted = list(prompt.input_variables)
        self.name = prompt.get_name()

    @property
    def InputType(self) -> Any:
        """The row: an object whose fields fill the prompt's variables."""
        return self.prompt.InputType

    @property
    def OutputType(self) -> Any:
        """The prompt's output: a ``PromptValue``."""
        return self.prompt.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        """Return the prompt's input schema: its variables as fields."""
        return self.prompt.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        """Return the prompt's output schema."""
        return self.prompt.get_output_schema(config)

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> PromptValue:
        """Check the row, then render the prompt (a :class:`RowError` for a bad row)."""
        return self.prompt.invoke(self._variables(input), config, **kwargs)

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> PromptValue:
        """Check the row, then render the prompt (a :class:`RowError` for a bad row)."""
        return await self.prompt.ainvoke(self._variables(input), config, **kwargs)

    def _variables(self, row: Any) -> dict[str, Any]:
        wanted = self.wanted
        if isinstance(row, str) and len(wanted) == 1:
            return {wanted[0]: row}
        if not isinstance(row, Mapping):
            raise RowError(f"expected an object with fields {wanted}, got {type(row).__name__}")
        missing = [v for v in wanted if v not in row]
        if missing:
            has = ", ".join(map(str, row)) or "none"
            msg = f"missing prompt variable {', '.join(map(repr, missing))}; the row has: {has}"
            raise RowError(msg)
        return {v: row[v] for v in wanted}
