"""Property tests of the API from its own OpenAPI schema (schemathesis): no input gets a 5xx.

Bodies that fit the schema and bodies that do not (schemathesis' negative
mode: wrong types, missing and extra fields, out-of-range numbers), with and
without the bearer token; a 422 also never echoes more than a short excerpt.
"""

import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from lc_async_pipelines.service import ServiceSettings, create_app
from tests.unit.fakes import cycling_llm

TOKEN = "schema-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# schemathesis' ASGI client sends Host: testserver, which a token-less service would refuse.
open_app = create_app(
    cycling_llm("A fine story. The end."), settings=ServiceSettings(allowed_hosts=("testserver",))
)
guarded_app = create_app(
    cycling_llm("A fine story. The end."), settings=ServiceSettings(api_token=TOKEN)
)

open_schema = schemathesis.openapi.from_asgi("/openapi.json", open_app)
guarded_schema = schemathesis.openapi.from_asgi("/openapi.json", guarded_app, headers=AUTH)
for loaded in (open_schema, guarded_schema):
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def short_422(ctx, response, case):
    """A 422 answers with at most a short excerpt of each input."""
    if response.status_code == 422:
        assert len(response.content) < 8_000, f"a 422 of {len(response.content)} bytes"
        for error in response.json()["detail"]:
            if isinstance(error, dict) and isinstance(error.get("input"), str):
                assert len(error["input"]) <= 101


@open_schema.parametrize()
@settings(max_examples=60, deadline=None)
def test_no_request_gets_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error, short_422])


@guarded_schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_no_request_gets_a_server_error_with_a_token(case):
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, short_422])


@guarded_schema.parametrize()
@settings(max_examples=30, deadline=None)
def test_without_the_token_every_request_is_a_401(case):
    response = case.call()
    if case.path == "/healthz":  # open to all, any method
        assert response.status_code < 500
    else:
        assert response.status_code == 401, response.text
