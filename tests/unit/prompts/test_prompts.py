import pytest

from lc_async_pipelines.prompts import (
    COMBINE_PROMPT,
    MAP_PROMPT,
    OUTLINE_PROMPT,
    STORY_FROM_OUTLINE_PROMPT,
    STORY_PROMPT,
    SUMMARY_PROMPT,
)


@pytest.mark.parametrize(
    ("prompt", "variables"),
    [
        (STORY_PROMPT, {"topic", "max_words"}),
        (OUTLINE_PROMPT, {"topic"}),
        (STORY_FROM_OUTLINE_PROMPT, {"topic", "outline", "max_words"}),
        (SUMMARY_PROMPT, {"text", "max_words"}),
        (MAP_PROMPT, {"text", "max_words"}),
        (COMBINE_PROMPT, {"summaries", "max_words"}),
    ],
)
def test_input_variables(prompt, variables):
    assert set(prompt.input_variables) == variables


def test_missing_variable_raises_key_error():
    with pytest.raises(KeyError):
        SUMMARY_PROMPT.invoke({"text": "x"})


def test_values_reach_the_messages():
    messages = STORY_PROMPT.invoke({"topic": "a magical forest", "max_words": 99}).to_messages()
    assert messages[0].type == "system"
    assert "a magical forest" in messages[-1].content and "99" in messages[-1].content
