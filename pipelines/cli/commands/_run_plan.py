"""``pipelines run``, before the run: every check, then the output opened and locked.

Nothing here starts a model server or calls a model; a check that fails is a
usage error (exit 2) and leaves the output as it was.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lc_async_pipelines._text import did_you_mean
from lc_async_pipelines.cli._checks import (
    chain_input_shape,
    check_model_key,
    check_paths,
    fail_usage,
    model_identity,
)
from lc_async_pipelines.cli._lanes_args import lanes_model_problem
from lc_async_pipelines.cli._shared_limits import check_shared_services_reachable
from lc_async_pipelines.cli.commands._flex_lane import check_lane_flags, check_lane_model

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from lc_async_pipelines.models import ModelSettings
    from lc_async_pipelines.registry import PipelineSpec
    from lc_async_pipelines.runner import Item
    from lc_async_pipelines.runner.inputs import ItemReader
    from lc_async_pipelines.runner.records import RunFile

__all__ = [
    "RunPlan",
    "check_batch_model",
    "check_engine_and_cost_flags",
    "check_output_format",
    "input_token_cap",
    "load_price_table",
    "pipeline_from_args",
    "prepare_run",
    "read_run_items",
]

_NO_BATCH_EMBEDDED = (
    "--batch-api: the embedded model has no Batch API; use an OpenAI endpoint or anthropic:MODEL"
)


@dataclass
class RunPlan:
    """Everything a run needs, checked before any model server starts."""

    spec: PipelineSpec
    options: dict[str, Any]
    items: Iterable[Item]
    total: int | None
    run: RunFile
    reader: ItemReader
    settings: ModelSettings
    max_input_tokens: int | None = None
    done: set[str] = field(default_factory=set)
    prices: Any = None


def prepare_run(args: argparse.Namespace) -> RunPlan:
    """Check every argument against the others and the input; open and lock the output."""
    check_paths(args)  # first: a wrong path answers before LangChain loads
    check_output_format(args.output)
    check_engine_and_cost_flags(args)
    spec, options = pipeline_from_args(args)
    if args.engine == "ray" and spec.owns_model:
        fail_usage(f"--engine ray: {args.target} is a ready Runnable; Ray needs a factory to ship")
    if spec.owns_model:
        _check_governable(args, spec)
    from lc_async_pipelines.models import ModelSettings

    settings = ModelSettings.from_env(model=args.model, embedded=args.embedded or None)
    model = model_identity(args, spec, settings)
    _check_model_for_run(args, spec, settings)
    max_input_tokens = input_token_cap(args, spec, settings)  # a prompt over it: exit 2 here

    from lc_async_pipelines.runner import count_items

    reader, required = read_run_items(args, spec, options)
    head = [item for _, item in zip(range(5), reader, strict=False)]
    check_first_rows(head, args, required)
    prices = load_price_table(args, settings)  # a bad price file: exit 2 before anything is written
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail_usage(f"--output {args.output}: cannot make its folder ({exc.strerror})")
    total = count_items(args.input)
    if total is not None and args.limit is not None:
        total = min(total, args.limit)
    run = _open_output(args, spec, options, model, settings, total)
    done = set(run.done_ids)
    if total is not None:
        total = max(0, total - len(done))
    return RunPlan(
        spec,
        options,
        itertools.chain(head, reader),  # the rows peeked at, then the rest
        total,
        run,
        reader,
        settings,
        max_input_tokens,
        done,
        prices,
    )


# Tables people may ask for that are not written: refused rather than filled with JSON lines.
_OTHER_TABLES = (".xlsx", ".xls", ".ods", ".tsv", ".feather", ".arrow", ".pq")


def check_output_format(output: Path) -> None:
    """--output: records (any name), or a .csv or .parquet table; Parquet needs pyarrow.

    Standard library only, so it answers before LangChain loads.
    """
    import importlib.util

    suffix = output.suffix.lower()
    if suffix in _OTHER_TABLES:
        fail_usage(
            f"--output {output}: {suffix} is not written; give .jsonl (records), "
            ".csv or .parquet (a table, its records kept beside it)"
        )
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        fail_usage(
            f"--output {output}: Parquet needs pyarrow: pip install 'lc-async-pipelines[parquet]'"
        )


def _check_governable(args: argparse.Namespace, spec: PipelineSpec) -> None:
    """A ready Runnable's chat models must be reachable for the run's budget: else exit 2 now."""
    from langchain_core.language_models import FakeListChatModel

    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.runner.limits import RateBudget
    from lc_async_pipelines.runner.limits.chat_model import govern

    try:
        govern(spec.build(FakeListChatModel(responses=["."])), RateBudget())
    except ConfigurationError as exc:
        fail_usage(f"{args.target}: {exc}")


def _open_output(
    args: argparse.Namespace,
    spec: PipelineSpec,
    options: dict[str, Any],
    model: str,
    settings: ModelSettings,
    items: int | None,
) -> RunFile:
    """Open --output for this run (resume or --restart); the lock is the caller's to release."""
    from lc_async_pipelines.runner.records import RunManifest, open_run

    manifest = RunManifest.new(
        pipeline=str(args.prompt) if args.prompt else args.target,
        fingerprint=_run_fingerprint(args, options),
        model=model,
        input=args.input,
        options=options,
        items=items,
        limits={"rpm": args.rpm, "tpm": args.tpm, "max_in_flight": args.max_in_flight},
    )
    check_shared_services_reachable(args, settings)  # Redis unreachable: output untouched
    try:  # last: it takes the lock, which only the caller's `with` releases
        return open_run(args.output, manifest, restart=args.restart)
    except OSError as exc:
        fail_usage(f"--output {args.output}: cannot be written ({exc.strerror})")


def pipeline_from_args(args: argparse.Namespace) -> tuple[PipelineSpec, dict[str, Any]]:
    """The pipeline of TARGET or --prompt, and the options its flags give it."""
    from lc_async_pipelines.registry import load_pipeline

    if args.target is None and args.prompt is None:
        fail_usage("give a TARGET (a pipeline name or module:attr) or --prompt FILE")
    if args.target is not None and args.prompt is not None:
        fail_usage(f"give a TARGET ({args.target}) or --prompt FILE, not both")
    if args.schema and args.prompt is None:
        fail_usage("--schema goes with --prompt")
    options: dict[str, Any] = {}
    if args.max_words is not None:
        options["max_words"] = args.max_words
    if args.kind is not None:
        options["kind"] = args.kind
    if args.outline:
        options["outline"] = True
    if args.max_chunks is not None:
        options["max_chunks"] = args.max_chunks
    if args.candidates is not None:
        options["candidates"] = args.candidates
    spec = _prompt_file_pipeline(args) if args.prompt is not None else load_pipeline(args.target)
    takes = spec.defaults()
    for name in options:
        if name not in takes:
            flag = "--" + name.replace("_", "-")
            options_text = ", ".join(takes) or "no options"
            fail_usage(f"{flag}: pipeline {spec.name!r} takes no {name} (it takes: {options_text})")
    if "lengthen" in takes and _uses_batches(args):
        # Lengthening a short summary would be one more batch stage (up to 24 h).
        options["lengthen"] = False
    if spec.owns_model and (args.model or args.embedded or args.cache or args.fallback_model):
        print(
            f"pipelines: warning: {args.target} is a ready Runnable with its own model; "
            "-m, --embedded, --cache and --fallback-model do not reach it (give a factory)",
            file=sys.stderr,
        )
    return spec, options


def _uses_batches(args: argparse.Namespace) -> bool:
    """Whether the run sends its calls through the Batch API (--batch-api or a batch lane)."""
    lanes = getattr(args, "lanes", None) or ()
    return bool(getattr(args, "batch_api", False)) or "batch" in lanes


def _prompt_file_pipeline(args: argparse.Namespace) -> PipelineSpec:
    """The pipeline of --prompt FILE (and --schema): one prompt, one model call a row."""
    from lc_async_pipelines.prompt_chain import (
        build_prompt_chain,
        load_prompt_file,
        load_schema,
        template_tokens,
    )
    from lc_async_pipelines.registry import PipelineSpec

    prompt = load_prompt_file(args.prompt)
    schema = load_schema(args.schema) if args.schema else None

    def factory(llm: Any) -> Runnable[Any, Any]:
        return build_prompt_chain(llm, prompt, schema=schema)

    return PipelineSpec(
        name=args.prompt.stem,
        factory=factory,
        description=str(args.prompt),
        input_label="row",
        prompt_tokens=template_tokens(prompt),  # sent with every row
    )


def read_run_items(
    args: argparse.Namespace, spec: PipelineSpec, options: dict[str, Any]
) -> tuple[ItemReader, list[str]]:
    """The reader of --input, shaped as the chain takes it, and the fields it requires."""
    from lc_async_pipelines.runner import read_items

    whole_rows, required, reads = chain_input_shape(spec, options)
    if args.field and whole_rows:
        fail_usage(
            f"--field: pipeline {spec.name!r} takes whole rows (fields: {', '.join(required)})"
        )
    reader = read_items(
        args.input,
        field=args.field,
        id_field=args.id_field or "id",
        whole_rows=whole_rows,
        text_key=required[0] if len(required) == 1 else "input",
        keep_fields=reads,
    )
    return reader, required


def check_first_rows(head: list[Item], args: argparse.Namespace, required: list[str]) -> None:
    """Fail before any server starts when the first rows cannot feed the pipeline.

    Checked: there is at least one item (issue 22: an all-NUL CSV ran nothing and
    exited 0), the rows give the text or fields the chain reads (``--field``, the
    prompt's variables) and the first row has the ``--id-field`` given, each
    with the closest field name when one is near.
    """
    if not head:  # a run of nothing would end "0 done", exit 0: a wrong file, most likely
        fail_usage(
            f"--input {args.input}: no items (an empty or blank file, or a header with no rows)"
        )
    if args.id_field is not None:
        _check_id_field(args, head[0].line)
    usable = [i for i in head if i.error is None]
    if head and not usable:
        raw = _first_row_fields(args.input)
        found = f"; the first row has: {', '.join(raw)}" if raw else ""
        hint = did_you_mean(args.field, raw) if args.field else ""
        fail_usage(f"{args.input}: {head[0].error}{hint}{found}")
    for item in usable[:1]:
        if isinstance(item.input, dict):
            missing = [r for r in required if r not in item.input]
            if missing:
                # The row as the file has it: the item holds only the fields the chain reads.
                raw = _first_row_fields(args.input)
                hint = did_you_mean(missing[0], raw)
                fail_usage(
                    f"{args.input} line {item.line}: no field for prompt variable "
                    f"{', '.join(map(repr, missing))}{hint}; the row has: "
                    f"{', '.join(raw) or 'no fields'}"
                )


def _check_id_field(args: argparse.Namespace, line: int) -> None:
    """--id-field names a field of the first row (a typo would give every item a hashed id)."""
    raw = _first_row_fields(args.input)
    if args.id_field in raw:
        return
    if not raw or args.input.suffix.lower() == ".txt":
        fail_usage(f"--id-field {args.id_field}: {args.input} has lines of text, not fields")
    fail_usage(
        f"--id-field {args.id_field}: {args.input} line {line} has no such field"
        f"{did_you_mean(args.id_field, raw)}; the row has: {', '.join(raw)}"
    )


def _first_row_fields(path: Path) -> list[str]:
    from lc_async_pipelines.runner import read_items

    try:
        first = next(iter(read_items(path, whole_rows=True)), None)
    except Exception:  # only for the message: an unreadable file says so elsewhere
        return []
    return [str(k) for k in first.input] if first and isinstance(first.input, dict) else []


def input_token_cap(
    args: argparse.Namespace, spec: PipelineSpec, settings: ModelSettings
) -> int | None:
    """--max-input-tokens, else the model's context window unless the pipeline chunks inputs.

    A prompt template that alone fills the cap (it is sent with every row) is exit 2.
    """
    given: int | None = args.max_input_tokens
    if given is not None or spec.splits_long_inputs or spec.owns_model:
        cap = given
    else:
        cap = settings.context_window
    if cap is not None and spec.prompt_tokens >= cap:
        what = "--max-input-tokens" if given is not None else "the model's context window"
        fail_usage(
            f"--prompt {args.prompt}: the template alone is about {spec.prompt_tokens:,} tokens, "
            f"sent with every row; {what} is {cap:,}"
        )
    return cap


def _run_fingerprint(args: argparse.Namespace, options: dict[str, Any]) -> str:
    """What makes records of one run: target, prompt and schema texts, options, fields."""
    from lc_async_pipelines.runner.records import chain_fingerprint

    def text(path: Path | str | None) -> str | None:
        if path is None or not Path(path).is_file():
            return None if path is None else str(path)
        return Path(path).read_text(encoding="utf-8", errors="replace")

    return chain_fingerprint(
        {
            "target": args.target,
            "prompt": text(args.prompt),
            "schema": text(args.schema),
            "options": options,
            "field": args.field,
            "id_field": args.id_field or "id",  # as before the flag had no default
        }
    )


def check_engine_and_cost_flags(args: argparse.Namespace) -> None:
    """--prices, --batch-api, --lane, --max-cost and --engine: each with the flags it goes with."""
    check_lane_flags(args)
    if args.prices is not None and not args.prices.is_file():
        what = "is a folder" if args.prices.is_dir() else "no such file"
        fail_usage(f"--prices {args.prices}: {what}; give a price table JSON file")
    if args.batch_api:
        if args.engine == "ray":
            fail_usage(
                "--batch-api: one process collects the calls into batches; drop --engine ray"
            )
        if args.stream:
            fail_usage("--stream: Batch API replies come whole, not as tokens; drop --stream")
    if args.max_cost is not None and args.engine == "ray":
        fail_usage("--max-cost: one run-wide cap needs one process; drop --engine ray")
    if not args.batch_api:
        _check_batch_flags_unused(args)
    if args.engine == "ray":
        _check_ray_flags(args)
        return
    for flag, value in (("--workers", args.workers), ("--address", args.address)):
        if value is not None:
            fail_usage(f"{flag} goes with --engine ray")


def _check_batch_flags_unused(args: argparse.Namespace) -> None:
    """Without --batch-api, no flag of the Batch API may be given."""
    for flag, given in (
        ("--batch-retry", args.batch_retry != "batch"),
        ("--batch-window", args.batch_window != 600.0),
        ("--max-enqueued-tokens", args.max_enqueued_tokens is not None),
    ):
        if given:
            fail_usage(f"{flag} goes with --batch-api")


def _check_ray_flags(args: argparse.Namespace) -> None:
    """--engine ray: no token stream, and a cache every worker can reach."""
    if args.stream:
        fail_usage("--stream: tokens stay on the Ray workers; drop --stream or --engine ray")
    if args.cache is not None and "://" not in args.cache:
        fail_usage(
            f"--cache {args.cache}: Ray workers need a shared cache, redis://HOST:PORT/DB "
            "(one SQLite file cannot serve processes on many machines)"
        )


def check_batch_model(args: argparse.Namespace, settings: ModelSettings) -> None:
    """--batch-api needs an endpoint with a Batch API, which the embedded model is not.

    --lane flex needs an OpenAI model.
    """
    check_lane_model(args, settings)
    if args.batch_api and settings.uses_embedded:
        fail_usage(_NO_BATCH_EMBEDDED + (" (drop --embedded)" if args.embedded else ""))


def _check_model_for_run(args: argparse.Namespace, spec: Any, settings: Any) -> None:
    """The model against the lanes and the Batch API asked for, its key, a batch in flight."""
    check_batch_model(args, settings)
    lane_problem = lanes_model_problem(args, settings)
    if lane_problem:
        fail_usage(lane_problem)
    _check_batches_in_flight(args)
    if not spec.owns_model:
        check_model_key(settings)


def _check_batches_in_flight(args: argparse.Namespace) -> None:
    """Without a batch lane, a batch a killed run left in flight would be paid for twice."""
    if args.restart or _uses_batches(args):
        return  # --lanes batch,... waits on it too (OUTPUT.lanes.json)
    from lc_async_pipelines.runner.records.paths import batches_path

    path = batches_path(args.output)
    if not path.is_file():  # the usual case: no import of the batch layer's SDKs
        return
    from lc_async_pipelines.runner.batch import batches_in_flight

    if count := batches_in_flight(path):
        fail_usage(
            f"--output {args.output}: {count} batch(es) of an earlier session still in flight "
            f"({path}); add --batch-api to collect them, or --restart to start over"
        )


def load_price_table(args: argparse.Namespace, settings: Any) -> Any:
    """The price table (--prices over the shipped one); --max-cost needs the model's price."""
    from lc_async_pipelines.runner.costs import load_prices

    prices = load_prices(args.prices)
    if args.max_cost is not None and not settings.uses_embedded:
        name = settings.model_name
        if name is None or prices.price_of(name) is None:
            shown = name or "the endpoint's model (give -m)"
            fail_usage(f"--max-cost: no price for {shown}; give one with --prices FILE")
    return prices
