import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import SecretStr

from lc_async_pipelines._scrub import (
    REDACTED,
    error_text,
    is_secret_name,
    register_secret,
    scrub,
    scrub_url,
)


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


# Issue 22 point 7: what leaked, and what was blanked for nothing.
SECRET_NAMES = [
    "DB_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
    "OPENAI_API_KEY",
    "STRIPE_SECRET",
    "db_password",
    "apiKey",
    "dbPassword",
    "x-api-key",
    "client_secret",
    "password",
    "secret",
    "token",
    "key",
]
QUERY_NAMES = ["key", "api_key", "apikey", "token", "access_token", "sig", "signature", "auth"]
ORDINARY = [
    "redirect to file:///etc/passwd: only http(s) URLs are fetched",
    "cat /etc/passwd | wc -l",
    "The secretary kept the secret: nobody asked.",
    "passwords are discussed in chapter 3; secrets in chapter 4",
    "max_tokens=512 tokens=40 monkey=3 keyboard=us",
    "the key: a short string that opens the lock",
    "secretly, the tokenizer split 42 tokens",
]
# A value as a .env or a query string holds one: no space, quote, & or #.
values = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"], include_characters="-_./+~!$*"),
    min_size=6,
    max_size=60,
).filter(lambda v: not v.startswith(("/", ".")))


@given(name=st.sampled_from(SECRET_NAMES), value=values, sep=st.sampled_from(["=", " = "]))
@example(name=SECRET_NAMES[0], value="export", sep="=")  # hypothesis found it: the prefix's word
def test_any_name_ending_in_a_credential_word_has_its_value_redacted(name, value, sep):
    line = f"export {name}{sep}{value}"
    # the whole line, not "value not in out": a value such as "export" is in it twice
    assert scrub(line) == f"export {name}{sep}{REDACTED}"


@given(name=st.sampled_from(QUERY_NAMES), value=values)
@example(name="key", value="region")
def test_query_string_credentials_are_redacted(name, value):
    url = f"https://gw.example.com/v1?region=eu&{name}={value}&page=2"
    out = scrub(f"POST {url} failed")  # the whole line: a value such as "region" is in it
    assert out == f"POST https://gw.example.com/v1?region=eu&{name}={REDACTED}&page=2 failed"


@pytest.mark.parametrize("text", ORDINARY)
def test_words_that_only_contain_passwd_or_secret_are_left_alone(text):
    assert scrub(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('PASSWORD="two words" next', f'PASSWORD="{REDACTED}" next'),
        ("{'db_password': 'p w'}", f"{{'db_password': '{REDACTED}'}}"),
        ("password: hunter2", f"password: {REDACTED}"),
        ("Authorization: Basic dXNlcjpwdw==", f"Authorization: Basic {REDACTED}"),
        ("X-Amz-Signature=ab12&X-Amz-Date=2020", f"X-Amz-Signature={REDACTED}&X-Amz-Date=2020"),
    ],
)
def test_quoted_values_and_header_forms(text, expected):
    assert scrub(text) == expected


def test_is_secret_name_decides_by_the_last_word():
    assert all(is_secret_name(n) for n in [*SECRET_NAMES, *QUERY_NAMES])
    assert not any(is_secret_name(n) for n in ["passwords", "secretary", "monkey", "max_tokens"])


def test_a_dotenv_given_as_sources_is_named_without_its_values(tmp_path):
    from lc_async_pipelines.errors import InputError
    from lc_async_pipelines.news import read_sources

    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "DB_PASSWORD=hunter2\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    for lines in (dotenv.read_text(), dotenv.read_text().splitlines()[1]):
        dotenv.write_text(lines)
        with pytest.raises(InputError) as caught:
            read_sources(dotenv)
        message = str(caught.value)
        assert "line 1" in message and REDACTED in message
        assert "hunter2" not in message and "EXAMPLEKEY" not in message


def test_an_endpoint_query_key_is_scrubbed_from_the_description_and_from_any_text():
    from lc_async_pipelines.models import ModelSettings, describe

    url = "http://127.0.0.1:8731/v1?key=Q-S3cret-Value-77&api-version=2024-10-21"
    settings = ModelSettings.from_env({"OPENAI_BASE_URL": url}, env_file=None, model="m")
    line = describe(settings)
    assert "Q-S3cret-Value-77" not in line and "127.0.0.1:8731/v1?key=" in line
    assert "2024-10-21" not in scrub_url(url)
    # registered: gone from text that does not say key= (an endpoint echoing its value)
    assert (
        scrub("upstream: bad credential Q-S3cret-Value-77")
        == f"upstream: bad credential {REDACTED}"
    )
    assert "2024-10-21" in scrub("api version 2024-10-21")  # not a credential's value


def test_the_redis_password_can_come_from_the_environment():
    from lc_async_pipelines.runner.redis_client import client_options

    env = {"REDIS_PASSWORD": "from-env-R3dis"}
    assert client_options("redis://127.0.0.1:6379/0", env)["password"] == "from-env-R3dis"
    assert "password" not in client_options("redis://:in-url-pw@127.0.0.1:6379/0", env)
    assert "password" not in client_options("redis://127.0.0.1:6379/0", {})
    assert scrub("AUTH from-env-R3dis failed") == f"AUTH {REDACTED} failed"
