"""The run's screen: streamed text in flight, the record's output kept, plain text off a terminal."""

import io

import pytest
from rich.console import Console

from lc_async_pipelines import build_summary_chain
from lc_async_pipelines.cli._display import (
    InFlight,
    RunDisplay,
    live_progress,
    repeats_note,
    trim_note,
)
from lc_async_pipelines.runner import Record
from tests.unit.fakes import fake_llm

LONG = (
    "The council met on Monday. It approved a new budget for the schools. "
    "Teachers welcomed it. Parents asked for more buses and for longer hours at the libraries "
    "of the town, which the mayor promised to look into before the"
)


def terminal(width: int = 60, height: int = 24) -> Console:
    # a terminal without colours: the tests read the text, not its styles
    return Console(
        file=io.StringIO(), force_terminal=True, color_system=None, width=width, height=height
    )


def screen_of(renderable, console: Console) -> str:
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def live_display(console: Console, flight: InFlight, *, tagged: bool = True) -> RunDisplay:
    progress = live_progress(flight, redirect_stdout=False, console=console)
    task = progress.add_task("", total=2, rate=0.0)
    return RunDisplay(
        stream=True, tagged=tagged, stdout=io.StringIO(), in_flight=flight, bar=(progress, task)
    )


async def test_tokens_show_as_they_arrive_then_the_record_replaces_them_with_the_trim_noted():
    flight = InFlight(listen=True)
    chain = build_summary_chain(fake_llm([LONG]), max_words=10)
    config = {"callbacks": [flight.handler], "metadata": {"item_id": "doc-1"}}
    output = await chain.ainvoke("a document", config)
    assert output == "The council met on Monday. It approved a new budget for the schools."
    console = terminal()
    in_flight = screen_of(flight, console)
    assert in_flight.startswith("[doc-1] The council met") and "libraries" in in_flight

    display = live_display(console, flight)
    with console.capture() as capture:
        display.show(Record(id="doc-1", line=1, input="a document", output=output, calls=1))
    shown = capture.get()
    assert f"[doc-1] {output}" in " ".join(shown.split())  # wrapped at 60 columns
    assert "libraries" not in shown  # what the chain trimmed is not left on screen
    dropped = len(LONG.split()) - len(output.split())
    assert f"(trimmed: {dropped} streamed words past the limit are not kept)" in shown
    assert screen_of(flight, console).strip() == ""  # the item left the in-flight area


async def test_a_summary_with_repeats_left_out_says_so_not_that_it_passed_the_limit():
    once = "The ship was lost in space on its way home to the old earth."
    again = "The ship was lost in space on its long way home to the earth."
    flight = InFlight(listen=True)
    chain = build_summary_chain(fake_llm([f"{once} {again}"]), max_words=20)
    notes = {"repeats_dropped": 1}
    config = {"callbacks": [flight.handler], "metadata": {"item_id": "doc-1"}}
    assert await chain.ainvoke("a document", config) == once
    console = terminal(width=100)
    display = live_display(console, flight)
    with console.capture() as capture:
        display.show(Record(id="doc-1", line=1, input="a", output=once, calls=1, notes=notes))
    shown = capture.get()
    assert "(trimmed: 1 repeated sentence left out)" in shown and "past the limit" not in shown
    assert repeats_note({"repeats_dropped": 2}) == "(trimmed: 2 repeated sentences left out)"
    assert repeats_note({}) is None and repeats_note({"repeats_dropped": True}) is None


def test_each_item_in_flight_gets_its_share_of_the_screen_above_the_bar():
    flight = InFlight(listen=True)
    for tag in ("a", "b", "c"):
        flight.start(tag, run_id := __import__("uuid").uuid4())
        flight.token(tag, run_id, " ".join(f"{tag}{i}" for i in range(200)))
    lines = screen_of(flight, terminal(width=40, height=13)).splitlines()
    assert len(lines) == 9  # 3 items x 3 lines: 4 rows stay free for the bar and a margin
    assert [lines[i] for i in (0, 3, 6)] == ["[a] …", "[b] …", "[c] …"]  # the tag kept in sight
    blocks = [" ".join(lines[i + 1 : i + 3]) for i in (0, 3, 6)]
    for tag, block in zip("abc", blocks, strict=True):  # then each item's last lines
        assert block.endswith(f"{tag}199") and f"{tag}195" in block and f"{tag}0 " not in block


def test_a_failed_record_shows_its_error_and_no_trim_note_for_an_untrimmed_output():
    flight = InFlight(listen=True)
    console = terminal(width=100)
    display = live_display(console, flight, tagged=False)
    with console.capture() as capture:
        display.show(
            Record(id="x", line=1, input="i", error={"type": "RateLimitError", "message": "slow"})
        )
        display.show(Record(id="y", line=2, input="i", output="Whole.", calls=1))
    assert capture.get().splitlines() == ["✗ RateLimitError: slow", "Whole."]
    assert trim_note("Whole.", "Whole.") is None
    assert trim_note("One two. Three four", "One two.") is not None


def test_off_a_terminal_outputs_are_plain_lines_tagged_when_several_run():
    out = io.StringIO()
    display = RunDisplay(stream=True, tagged=True, stdout=out, in_flight=InFlight())
    display.show(Record(id="a1", line=1, input="i", output="First line.\n\nSecond line."))
    display.show(Record(id="b2", line=2, input="i", output={"tone": "calm"}))
    display.show(Record(id="c3", line=3, input="i", error={"type": "Boom", "message": "m"}))
    assert out.getvalue().splitlines() == [
        "[a1] First line.",
        "[a1] Second line.",
        '[b2] {"tone": "calm"}',
        "[c3] ✗ Boom: m",
    ]
    assert "\x1b" not in out.getvalue()
    untagged = io.StringIO()
    RunDisplay(stream=True, tagged=False, stdout=untagged, in_flight=InFlight()).show(
        Record(id="a1", line=1, input="i", output="Just text.")
    )
    assert untagged.getvalue() == "Just text.\n"
    quiet = io.StringIO()
    RunDisplay(stream=False, tagged=True, stdout=quiet, in_flight=InFlight()).show(
        Record(id="a1", line=1, input="i", output="Not shown.")
    )
    assert quiet.getvalue() == ""


# Issue 22 point 5: a run slowed by a shared budget says why on its progress line.
@pytest.mark.parametrize(
    ("runs", "limits", "rpm", "tpm", "note"),
    [
        (1, [], 600, None, None),
        (2, [], 600, None, "shared budget: 2 runs, ~300 rpm each"),
        (4, [], 600, 100_000, "shared budget: 4 runs, ~150 rpm and ~25,000 tpm each"),
        (2, [], None, None, None),  # no limit of its own: nothing held back
        (2, [(60, None)], 600, None, "shared budget: held by a run at --rpm 60"),
        (2, [(600, None)], 60, None, None),  # only a faster run shares it
        (3, [(None, 5_000)], 600, 90_000,
         "shared budget: held by a run at --tpm 5000"),
    ],
)  # fmt: skip
def test_the_share_note_says_why_a_run_goes_below_its_own_limits(runs, limits, rpm, tpm, note):
    from lc_async_pipelines.cli._shared_limits import share_note
    from lc_async_pipelines.runner.limits import SharedUse

    assert share_note(SharedUse(runs=runs, limits=limits), rpm, tpm) == note


def test_a_note_joins_the_bar_on_a_terminal_and_is_one_line_off_one(capsys):
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    progress = live_progress(InFlight(), redirect_stdout=False, console=console)
    task = progress.add_task("", total=10, rate=0.0)
    shown = RunDisplay(stream=False, tagged=False, stdout=io.StringIO(), in_flight=InFlight(),
                       bar=(progress, task))  # fmt: skip
    shown.set_note("shared budget: 2 runs, ~300 rpm each")
    assert (
        progress.tasks[0].description
        == "done 0 failed 0 tokens 0 · shared budget: 2 runs, ~300 rpm each"
    )
    shown.set_note(None)
    assert "shared" not in progress.tasks[0].description

    plain = RunDisplay(stream=False, tagged=False, stdout=io.StringIO(), in_flight=InFlight())
    plain.set_note("shared budget: held by a run at --rpm 60")
    assert capsys.readouterr().err == "pipelines: shared budget: held by a run at --rpm 60\n"


def test_an_item_of_several_candidates_says_which_was_kept_not_that_words_were_trimmed():
    flight = InFlight(listen=True)
    uuid = __import__("uuid")
    for text in ("The council voted.", "A made-up story about dragons and more.", "Votes."):
        flight.start("doc-1", run_id := uuid.uuid4())
        flight.token("doc-1", run_id, text)
    console = terminal()
    display = live_display(console, flight)
    notes = {"candidates": 3, "candidate_chosen": 0}
    record = Record(
        id="doc-1", line=1, input="x", output="The council voted.", calls=3, notes=notes
    )
    with console.capture() as capture:
        display.show(record)
    shown = capture.get()
    assert "(best of 3: candidate 1 kept)" in shown and "trimmed" not in shown
