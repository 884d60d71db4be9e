"""Property test of the API from its own OpenAPI schema (schemathesis): no input gets a 500."""

import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error

from lc_async_pipelines.service import ServiceSettings, create_app
from tests.unit.fakes import cycling_llm

app = create_app(cycling_llm("A fine story. The end."), settings=ServiceSettings())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None)
def test_no_request_gets_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error])
