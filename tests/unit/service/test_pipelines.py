"""Any pipeline on every endpoint: user pipelines, object inputs, options, errors by class."""

import logging
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

from lc_async_pipelines.errors import DeadlineExceeded, RowError
from lc_async_pipelines.prompt_chain import build_prompt_chain
from lc_async_pipelines.registry import PipelineSpec, registered_pipelines
from lc_async_pipelines.runner import RetryPolicy
from tests.unit.fakes import FnChatModel, cycling_llm
from tests.unit.service.conftest import sse

STORY = registered_pipelines()["story"]
LETTER = ChatPromptTemplate.from_template("Write to {name} about {topic}.")


def build_shout_chain(llm, *, exclaim: bool = True) -> Runnable[str, str]:
    """Shout a topic back: a user's factory taking the chat model."""
    prompt = ChatPromptTemplate.from_template("Shout about {topic}")
    to_vars = RunnableLambda(lambda topic: {"topic": topic})
    chain = to_vars | prompt | llm | StrOutputParser()
    if exclaim:
        chain = chain | RunnableLambda(lambda text: text + "!")
    return chain.with_types(input_type=str)


SHOUT = PipelineSpec(
    "shout", build_shout_chain, "Shouts a topic.", input_label="topic", max_input_chars=50
)
# A prompt with two variables, through the library's prompt-file chain.
LETTER_ROWS = PipelineSpec("letter", lambda llm: build_prompt_chain(llm, LETTER), "A letter.")
# The same prompt as a plain LCEL chain: its input schema is an object with name and topic.
LETTER_TYPED = PipelineSpec("typed", lambda llm: LETTER | llm | StrOutputParser(), "A letter.")


def echo_model():
    """A model replying with the text of the prompt it got."""

    async def echo(messages, **_):
        return AIMessage(content="got: " + messages[-1].content)

    return FnChatModel(fn=echo)


async def test_a_user_pipeline_is_listed_and_streams(app_for):
    async with app_for(cycling_llm("HELLO THERE"), pipelines={"shout": SHOUT}) as client:
        listing = (await client.get("/v1/pipelines")).json()
        r = await client.post("/v1/pipelines/shout/stream", json={"input": "cats"})
    assert listing == [
        {
            "name": "shout",
            "description": "Shouts a topic.",
            "input_label": "topic",
            "max_input_chars": 50,
            "options": {"exclaim": True},
            "input_schema": listing[0]["input_schema"],
            "example": "",
        }
    ]
    assert listing[0]["input_schema"]["type"] == "string"
    events = sse(r.text)
    assert "".join(d["text"] for k, d in events if k == "token") == "HELLO THERE"
    assert events[-1] == ("end", events[-1][1])
    assert events[-1][1]["output"] == "HELLO THERE!"


async def test_the_listing_shows_options_defaults_and_input_schema(app_for):
    pipelines = {"story": STORY, "typed": LETTER_TYPED}
    async with app_for(cycling_llm("x"), pipelines=pipelines) as client:
        listing = {p["name"]: p for p in (await client.get("/v1/pipelines")).json()}
    assert listing["story"]["options"] == {"max_words": 250, "outline": False}
    assert listing["story"]["input_schema"]["type"] == "string"
    assert listing["typed"]["options"] == {}
    schema = listing["typed"]["input_schema"]
    assert schema["type"] == "object" and sorted(schema["required"]) == ["name", "topic"]


async def test_a_pipeline_served_under_another_name_keeps_that_name(app_for):
    async with app_for(cycling_llm("x"), pipelines={"yell": SHOUT}) as client:
        names = [p["name"] for p in (await client.get("/v1/pipelines")).json()]
        r = await client.post("/v1/pipelines/yell/invoke", json={"input": "dogs"})
    assert names == ["yell"]
    assert r.status_code == 200 and r.json()["pipeline"] == "yell"


async def test_an_object_input_runs_through_a_two_variable_prompt(app_for):
    pipelines = {"letter": LETTER_ROWS, "typed": LETTER_TYPED}
    row = {"name": "Ada", "topic": "engines"}
    async with app_for(echo_model(), pipelines=pipelines) as client:
        rows = await client.post("/v1/pipelines/letter/invoke", json={"input": row})
        typed = await client.post("/v1/pipelines/typed/invoke", json={"input": row})
        streamed = await client.post("/v1/pipelines/typed/stream", json={"input": row})
        batch = await client.post(
            "/v1/pipelines/letter/batch",
            json={"inputs": [row, {"name": "Bo", "topic": "tea"}]},
        )
    assert rows.status_code == 200, rows.text
    assert rows.json()["output"] == "got: Write to Ada about engines."
    assert typed.json()["output"] == "got: Write to Ada about engines."
    assert sse(streamed.text)[-1][1]["output"] == "got: Write to Ada about engines."
    results = sorted((d["index"], d["output"]) for k, d in sse(batch.text) if k == "result")
    assert results == [(0, "got: Write to Ada about engines."), (1, "got: Write to Bo about tea.")]


async def test_an_input_of_the_wrong_type_is_a_422(app_for):
    pipelines = {"story": STORY, "typed": LETTER_TYPED, "letter": LETTER_ROWS}
    async with app_for(echo_model(), pipelines=pipelines) as client:
        object_to_text = await client.post(
            "/v1/pipelines/story/invoke", json={"input": {"topic": "a fox"}}
        )
        text_to_object = await client.post("/v1/pipelines/typed/stream", json={"input": "Ada"})
        missing = await client.post("/v1/pipelines/typed/invoke", json={"input": {"name": "Ada"}})
        not_a_string = await client.post(
            "/v1/pipelines/typed/invoke", json={"input": {"name": "Ada", "topic": 3}}
        )
        in_batch = await client.post(
            "/v1/pipelines/story/batch", json={"inputs": ["a fox", {"topic": "x"}]}
        )
        neither = await client.post("/v1/pipelines/story/invoke", json={"input": 42})
        rows = await client.post("/v1/pipelines/letter/invoke", json={"input": {"name": "A"}})
    assert object_to_text.status_code == 422
    assert object_to_text.json()["detail"] == (
        "input: the story pipeline takes a string, not an object"
    )
    assert text_to_object.status_code == 422
    assert text_to_object.json()["detail"] == (
        "input: the typed pipeline takes an object with fields name, topic, not a string"
    )
    assert missing.status_code == 422 and "'topic' is a required property" in missing.text
    assert (
        not_a_string.status_code == 422
        and "topic: must be a string, not an integer" in not_a_string.text
    )
    assert in_batch.status_code == 422 and in_batch.json()["detail"].startswith("inputs[1]: ")
    assert neither.status_code == 422 and "a string or a JSON object" in neither.text
    assert rows.status_code == 422 and "'topic' is a required property" in rows.text


async def test_an_input_the_chain_itself_refuses_is_a_422(app_for):
    def picky(value: Any) -> str:
        raise RowError("missing prompt variable 'topic'")

    spec = PipelineSpec("picky", lambda llm: RunnableLambda(picky))  # input: anything
    async with app_for(echo_model(), pipelines={"picky": spec}) as client:
        listing = (await client.get("/v1/pipelines")).json()
        refused = await client.post("/v1/pipelines/picky/invoke", json={"input": {"name": "A"}})
        streamed = await client.post("/v1/pipelines/picky/stream", json={"input": "A"})
    assert "type" not in listing[0]["input_schema"]
    assert refused.status_code == 422
    error = refused.json()["detail"]["error"]
    assert error == {
        "type": "RowError",
        "message": "missing prompt variable 'topic'",  # our own error: its message is kept
        "request_id": error["request_id"],
    }
    assert sse(streamed.text)[-1][0] == "error"


async def test_an_object_input_over_the_limit_is_a_413(app_for):
    async with app_for(echo_model(), pipelines={"shout": SHOUT, "typed": LETTER_TYPED}) as client:
        r = await client.post("/v1/pipelines/shout/invoke", json={"input": {"topic": "x" * 60}})
    assert r.status_code == 413 and "(as JSON)" in r.text


async def test_max_words_for_a_pipeline_without_it_is_a_422(app_for):
    pipelines = {"shout": SHOUT, "story": STORY}
    async with app_for(cycling_llm("One. Two."), pipelines=pipelines) as client:
        refused = await client.post(
            "/v1/pipelines/shout/invoke", json={"input": "cats", "max_words": 50}
        )
        streamed = await client.post(
            "/v1/pipelines/shout/stream", json={"input": "cats", "max_words": 50}
        )
        batch = await client.post(
            "/v1/pipelines/shout/batch", json={"inputs": ["cats"], "max_words": 50}
        )
        taken = await client.post(
            "/v1/pipelines/story/invoke", json={"input": "cats", "max_words": 50}
        )
    for r in (refused, streamed, batch):
        assert r.status_code == 422
        assert "'max_words'" in r.json()["detail"] and "exclaim" in r.json()["detail"]
    assert taken.status_code == 200


class RequestDeadline(DeadlineExceeded):
    """A subclass with another name: still a deadline."""


class ImpostorError(Exception):
    """An error that only looks like a deadline by its name."""


ImpostorError.__name__ = "DeadlineExceeded"


def raising(exc: Exception) -> PipelineSpec:
    def fail(_: str) -> str:
        raise exc

    return PipelineSpec("raising", lambda llm: RunnableLambda(fail).with_types(input_type=str))


async def test_a_deadline_is_a_504_by_its_class_not_its_name(app_for):
    once = RetryPolicy(max_retries=0)
    async with app_for(
        cycling_llm("x"), pipelines={"p": raising(RequestDeadline("late"))}, retry=once
    ) as client:
        deadline = await client.post("/v1/pipelines/p/invoke", json={"input": "x"})
    async with app_for(
        cycling_llm("x"), pipelines={"p": raising(ImpostorError("no"))}, retry=once
    ) as client:
        impostor = await client.post("/v1/pipelines/p/invoke", json={"input": "x"})
    assert deadline.status_code == 504
    assert deadline.json()["detail"]["error"]["type"] == "RequestDeadline"
    assert impostor.status_code == 502
    assert impostor.json()["detail"]["error"]["type"] == "DeadlineExceeded"


async def test_a_pipeline_whose_factory_fails_is_left_out(app_for, caplog):
    def broken(llm):
        raise RuntimeError("no chain today")

    caplog.set_level(logging.INFO, logger="lc_async_pipelines.service")
    pipelines = {"broken": PipelineSpec("broken", broken), "shout": SHOUT}
    async with app_for(cycling_llm("x"), pipelines=pipelines) as client:
        names = [p["name"] for p in (await client.get("/v1/pipelines")).json()]
        r = await client.post("/v1/pipelines/broken/invoke", json={"input": "x"})
    assert names == ["shout"]
    assert r.status_code == 404
    assert "pipeline 'broken' left out: RuntimeError: no chain today" in caplog.text
    assert "serving pipelines shout on model GenericFakeChatModel (injected)" in caplog.text
