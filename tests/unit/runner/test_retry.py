import httpx
import openai
import pytest

from lc_async_pipelines.runner import is_transient, retry_after


def status_error(code: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(code, headers=headers or {}, request=request)
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        429: openai.RateLimitError,
        500: openai.InternalServerError,
    }.get(code, openai.APIStatusError)
    return cls("boom", response=response, body=None)


@pytest.mark.parametrize("code", [429, 500, 502, 503])
def test_transient_statuses(code):
    assert is_transient(status_error(code))


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_permanent_statuses(code):
    assert not is_transient(status_error(code))


def test_network_errors_are_transient_and_bad_input_is_not():
    request = httpx.Request("POST", "http://127.0.0.1/")
    assert is_transient(openai.APIConnectionError(request=request))
    assert is_transient(openai.APITimeoutError(request=request))
    assert is_transient(TimeoutError())
    assert not is_transient(KeyError("topic"))
    assert not is_transient(ValueError("bad"))


def test_retry_after_headers():
    assert retry_after(status_error(429, {"retry-after": "3"})) == 3.0
    assert retry_after(status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after(status_error(429, {"x-ratelimit-reset-requests": "1m0.5s"})) == 60.5
    assert (
        retry_after(status_error(429, {"retry-after": "1", "x-ratelimit-reset-tokens": "20ms"}))
        == 1.0
    )
    assert retry_after(status_error(429)) is None
    assert retry_after(ValueError()) is None


def test_cut_responses_are_transient():
    import json

    assert is_transient(json.JSONDecodeError("Expecting value", '{"id": "x", "cho', 15))
    assert is_transient(ValueError("No generations found in stream."))
    assert not is_transient(ValueError("max_tokens must be positive"))
