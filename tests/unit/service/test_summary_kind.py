"""The summary's ``kind`` through the service: asked for, guessed, noted in the response."""

import pytest

from tests.unit.fakes import cycling_llm
from tests.unit.service.conftest import sse

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you some."
SUMMARY = "Amanda baked cookies and will bring Jerry some tomorrow."
WORDS = 10  # SUMMARY is within 10 words ±30%: no call to lengthen it


async def test_invoke_notes_the_guessed_kind_and_takes_a_given_one(app_for):
    async with app_for(cycling_llm(SUMMARY)) as client:
        guessed = await client.post(
            "/v1/pipelines/summary/invoke", json={"input": DIALOGUE, "max_words": WORDS}
        )
        given = await client.post(
            "/v1/pipelines/summary/invoke",
            json={"input": DIALOGUE, "kind": "meeting", "max_words": WORDS},
        )
    assert guessed.status_code == 200 and guessed.json()["output"] == SUMMARY
    assert guessed.json()["notes"] == {"kind": "dialogue", "kind_guessed": True}
    assert given.json()["notes"] == {"kind": "meeting", "kind_guessed": False}


async def test_the_stream_ends_with_the_notes(app_for):
    async with app_for(cycling_llm(SUMMARY)) as client:
        r = await client.post(
            "/v1/pipelines/summary/stream",
            json={"input": DIALOGUE, "kind": "auto", "max_words": WORDS},
        )
    end = [d for k, d in sse(r.text) if k == "end"]
    assert end and end[0]["output"] == SUMMARY
    assert end[0]["notes"] == {"kind": "dialogue", "kind_guessed": True}


@pytest.mark.parametrize(
    ("path", "payload", "says"),
    [
        ("summary/invoke", {"input": "x", "kind": "bogus"}, "auto"),  # lists the kinds
        ("summary/batch", {"inputs": ["x"], "kind": "poem"}, "dialogue"),
        ("story/invoke", {"input": "x", "kind": "news"}, "takes no option 'kind'"),
    ],
)
async def test_a_bad_kind_is_a_422_naming_the_cause(app_for, path, payload, says):
    async with app_for(cycling_llm(SUMMARY)) as client:
        r = await client.post(f"/v1/pipelines/{path}", json=payload)
    assert r.status_code == 422
    assert says in r.text


async def test_the_listing_offers_the_kind_option(app_for):
    async with app_for(cycling_llm(SUMMARY)) as client:
        listing = (await client.get("/v1/pipelines")).json()
    summary = next(p for p in listing if p["name"] == "summary")
    assert summary["options"]["kind"] == "auto"


async def test_candidates_write_several_summaries_and_note_the_kept_one(app_for):
    async with app_for(cycling_llm(SUMMARY)) as client:
        r = await client.post(
            "/v1/pipelines/summary/invoke",
            json={"input": DIALOGUE, "kind": "dialogue", "candidates": 3, "max_words": WORDS},
        )
    assert r.status_code == 200 and r.json()["output"] == SUMMARY
    assert r.json()["calls"] == 3
    assert r.json()["notes"]["candidates"] == 3 and r.json()["notes"]["candidate_chosen"] == 0


@pytest.mark.parametrize(
    ("path", "payload", "says"),
    [
        ("summary/invoke", {"input": "x", "candidates": 6}, "less than or equal to 5"),
        ("summary/batch", {"inputs": ["x"], "candidates": 0}, "greater than or equal to 1"),
        ("story/invoke", {"input": "x", "candidates": 2}, "takes no option 'candidates'"),
    ],
)
async def test_bad_candidates_are_a_422_naming_the_cause(app_for, path, payload, says):
    async with app_for(cycling_llm(SUMMARY)) as client:
        r = await client.post(f"/v1/pipelines/{path}", json=payload)
    assert r.status_code == 422
    assert says in r.text
