"""Short summaries are lengthened, but not in a Batch API run, where it would be another stage."""

import pytest

from lc_async_pipelines.cli import build_parser
from lc_async_pipelines.cli.commands._run_plan import pipeline_from_args

RUN = ["run", "summary", "--input", "in.jsonl", "--output", "out.jsonl"]


@pytest.mark.parametrize(
    ("flags", "lengthen"),
    [
        ([], None),  # the factory's default: on
        (["--batch-api"], False),
        (["--lanes", "batch,standard", "--deadline", "1h"], False),
        (["--lanes", "flex,standard", "--deadline", "1h"], None),
    ],
)
def test_a_batch_run_does_not_lengthen_short_summaries(flags, lengthen):
    _, options = pipeline_from_args(build_parser().parse_args([*RUN, *flags]))
    assert options.get("lengthen") == lengthen


def test_a_pipeline_without_the_option_gets_none():
    args = build_parser().parse_args(["run", "story", "--input", "t.txt", "--output", "o.jsonl"])
    _, options = pipeline_from_args(args)
    assert "lengthen" not in options
    args = build_parser().parse_args(
        ["run", "story", "--input", "t.txt", "--output", "o.jsonl", "--batch-api"]
    )
    assert "lengthen" not in pipeline_from_args(args)[1]
