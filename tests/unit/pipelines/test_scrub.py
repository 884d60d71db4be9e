import pytest
from pydantic import SecretStr

from lc_async_pipelines._scrub import REDACTED, error_text, register_secret, scrub


@pytest.mark.parametrize(
    "text",
    [
        'Error 401: {"headers": {"Authorization": "Bearer sk-proj-abcdefghijklmnop1234"}}',
        "authorization: Bearer abc.def-ghi_jkl12345",
        "x-api-key: AKIAIOSFODNN7EXAMPLE",
        "api_key=abcd1234efgh&next=1",
        "token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_X",
        "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz was rejected",
    ],
)
def test_credential_shaped_strings_are_redacted(text):
    out = scrub(text)
    assert REDACTED in out
    for secret in (
        "sk-proj-abcdefghijklmnop1234",
        "abc.def-ghi_jkl12345",
        "AKIAIOSFODNN7EXAMPLE",
        "abcd1234efgh",
        "dozjgNryP4J3jVmNHl0w5N_X",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
    ):
        assert secret not in out


def test_registered_secrets_are_redacted_wherever_they_appear():
    register_secret(SecretStr("plain-looking-value-42"))
    assert scrub("echo: plain-looking-value-42!") == f"echo: {REDACTED}!"
    assert "plain-looking-value-42" not in error_text(ValueError("x plain-looking-value-42 y"))


def test_ordinary_text_is_left_alone():
    text = "The tokenizer split 42 tokens; passwords are discussed in chapter 3."
    assert scrub(text) == text


async def test_the_configured_key_is_scrubbed_from_handler_events_and_metrics():
    import asyncio

    from lc_async_pipelines.callbacks import MetricsCallbackHandler, QueueCallbackHandler
    from lc_async_pipelines.models import ModelSettings
    from tests.unit.fakes import FnChatModel

    ModelSettings.from_env({"OPENAI_API_KEY": "sk-env-configured-9999"}, env_file=None)

    async def leaky(messages, **_):
        raise RuntimeError("upstream said: your key sk-env-configured-9999 is wrong")

    queue: asyncio.Queue = asyncio.Queue()
    metrics = MetricsCallbackHandler()
    llm = FnChatModel(fn=leaky)
    with pytest.raises(RuntimeError):
        await llm.ainvoke("hi", {"callbacks": [QueueCallbackHandler(queue), metrics]})
    events = [queue.get_nowait() for _ in range(queue.qsize())]
    texts = [e.text for e in events if e.kind == "error"] + [c.error for c in metrics.calls]
    assert texts and all("sk-env-configured-9999" not in t and REDACTED in t for t in texts)


def test_a_password_inside_a_url_is_redacted():
    from lc_async_pipelines.models import ModelSettings, describe

    url = "http://user:pw-S3cretValue99@127.0.0.1:8813/v1"
    assert "pw-S3cretValue99" not in scrub(f"calling {url}")
    line = describe(ModelSettings(base_url=url, model="m"))
    assert "pw-S3cretValue99" not in line and "127.0.0.1:8813" in line
