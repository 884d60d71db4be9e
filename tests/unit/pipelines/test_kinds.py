import pytest

from lc_async_pipelines.kinds import KINDS, check_kind, guess_kind

DIALOGUE = (
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
)
TAGGED = "#Person1#: Hello, how are you?\n#Person2#: Fine, thanks. And you?\n#Person1#: Tired."
NEWS = (
    "The city council voted on Tuesday to build a new bridge over the river, officials said. "
    "Mayor Jane Smith told reporters the project would cost $40 million and take three years. "
    "Police said traffic would be diverted during the work. " * 3
)
ESSAY = (
    "Photosynthesis converts light energy into chemical energy. Plants use chlorophyll to "
    "absorb light, mostly in the blue and red wavelengths. The process has two stages. " * 4
)


def meeting(words_per_turn: int = 60, turns: int = 20) -> str:
    speakers = ["Project Manager", "Marketing", "User Interface", "Industrial Designer"]
    line = " ".join(
        ["we should look at the remote control design and its cost"] * (words_per_turn // 10)
    )
    return "\n".join(f"{speakers[i % 4]}: {line}" for i in range(turns))


def story(paragraphs: int = 120) -> str:
    said = '"Where is the ship?" asked Noork, looking at the moon above the red hills.'
    told = "He walked on for a long time, and the wind was cold over the dark plain of the valley."
    return "\n\n".join(said if i % 3 == 0 else told for i in range(paragraphs))


def long_report(paragraphs: int = 150) -> str:
    return "\n\n".join(
        "Section 4 sets out the maintenance intervals for each pump and valve in the plant."
        for _ in range(paragraphs)
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (DIALOGUE, "dialogue"),
        (TAGGED, "dialogue"),
        (meeting(), "meeting"),  # speaker turns over 800 words
        (meeting(turns=4, words_per_turn=20), "meeting"),  # short, but 4 speakers
        (
            meeting(turns=6, words_per_turn=20)
            .replace("User Interface", "Marketing")
            .replace("Industrial Designer", "Project Manager"),
            "dialogue",
        ),  # short, 2 speakers
        (story(), "story"),  # long, a third of its paragraphs spoken lines
        (long_report(), "document"),  # long, no speech
        (NEWS, "news"),
        (ESSAY, "document"),
        ("", "document"),
    ],
)
def test_the_kind_is_guessed_from_turns_length_and_reporting_words(text, kind):
    assert guess_kind(text) == kind


def test_a_note_or_a_single_colon_line_is_no_dialogue():
    text = "Note: prices may change.\n" + ESSAY
    assert guess_kind(text) == "document"
    two_turns = "Alice: hello there\nBob: hi\n" + "\n".join(["plain prose line here"] * 10)
    assert guess_kind(two_turns) != "dialogue"


def test_check_kind_accepts_the_kinds_and_names_them_otherwise():
    assert [check_kind(k) for k in KINDS] == list(KINDS)
    assert KINDS == ("auto", "story", "meeting", "dialogue", "news", "document")
    with pytest.raises(ValueError, match="auto, story, meeting, dialogue, news, document"):
        check_kind("bogus")
    with pytest.raises(ValueError, match="got None"):
        check_kind(None)
