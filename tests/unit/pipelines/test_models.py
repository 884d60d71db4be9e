import logging

import pytest

from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_SAMPLING
from lc_async_pipelines.models import ModelSettings, describe, make_chat_model


def test_empty_env_means_embedded(tmp_path):
    settings = ModelSettings.from_env({}, env_file=tmp_path / "none")
    assert settings.uses_embedded


def test_env_file_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "OPENAI_API_KEY=sk-file\nPIPELINES_MODEL=file-model\nPIPELINES_MAX_TOKENS=77\n"
    )
    settings = ModelSettings.from_env({"PIPELINES_MODEL": "env-model"}, env_file=env_file)
    assert settings.model == "env-model" and settings.max_tokens == 77
    assert settings.api_key.get_secret_value() == "sk-file"
    assert not settings.uses_embedded


def test_key_never_in_repr_or_logs(caplog):
    settings = ModelSettings.from_env({"OPENAI_API_KEY": "sk-very-secret"}, env_file=None)
    llm = make_chat_model(settings)
    logging.getLogger("t").info("settings %s llm %r", settings, llm)
    assert "sk-very-secret" not in repr(settings) + str(settings) + repr(llm) + caplog.text


def test_bad_extra_body_is_a_clear_error():
    with pytest.raises(ValueError, match="PIPELINES_EXTRA_BODY"):
        ModelSettings.from_env({"PIPELINES_EXTRA_BODY": "{nope"}, env_file=None)


def test_embedded_client_gets_loop_penalties_and_no_sdk_retries():
    llm = make_chat_model(ModelSettings(), base_url="http://127.0.0.1:9/v1")
    assert llm.model_name == EMBEDDED_MODEL_NAME
    assert llm.extra_body == EMBEDDED_SAMPLING
    assert llm.max_retries == 0
    # one plain request a call; astream still streams (streaming is unset, not False)
    assert not llm.streaming and "streaming" not in llm.model_fields_set
    assert llm.include_response_headers  # the rate-limit headers feed the budget


def test_hosted_client_sends_no_llama_options():
    settings = ModelSettings.from_env(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "PIPELINES_MODEL": "m"}, env_file=None
    )
    llm = make_chat_model(settings)
    assert llm.extra_body is None and llm.openai_api_base == "http://127.0.0.1:9/v1"


def _endpoint(models, seen=None):
    import httpx

    def handler(request):
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in models]})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_provider_prefix_is_read_only_for_known_providers():
    assert ModelSettings(model="anthropic:claude-x").provider == "anthropic"
    assert ModelSettings(model="anthropic:claude-x").model_name == "claude-x"
    ollama_name = ModelSettings(model="llama3.1:8b", base_url="http://h/v1")
    assert ollama_name.provider is None and ollama_name.model_name == "llama3.1:8b"


def test_embedded_flag_wins_over_a_key_in_the_environment(tmp_path):
    settings = ModelSettings.from_env(
        {"OPENAI_API_KEY": "sk-x", "PIPELINES_EMBEDDED": "1"}, env_file=tmp_path / "none"
    )
    assert settings.uses_embedded
    assert ModelSettings.from_env(
        {"OPENAI_API_KEY": "sk-x"}, env_file=None, embedded=True
    ).uses_embedded


def test_an_endpoint_with_one_model_is_asked_for_it():
    from lc_async_pipelines.models import resolve_model

    seen = []
    settings = ModelSettings(base_url="http://vllm:8000/v1", api_key="sk-k")
    resolved = resolve_model(settings, client=_endpoint(["Qwen/Qwen2.5-7B"], seen))
    assert resolved.model == "Qwen/Qwen2.5-7B"
    assert str(seen[0].url) == "http://vllm:8000/v1/models"
    assert seen[0].headers["authorization"] == "Bearer sk-k"


def test_an_endpoint_with_several_models_is_an_error_listing_them():
    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.models import resolve_model

    with pytest.raises(ConfigurationError, match=r"llama3\.1:8b, qwen2\.5") as caught:
        resolve_model(
            ModelSettings(base_url="http://o/v1"), client=_endpoint(["llama3.1:8b", "qwen2.5"])
        )
    assert "PIPELINES_MODEL" in str(caught.value)


def test_an_unreachable_endpoint_is_a_configuration_error():
    import httpx

    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.models import resolve_model

    def refuse(request):
        raise httpx.ConnectError("refused")

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(ConfigurationError, match="cannot reach"):
        resolve_model(ModelSettings(base_url="http://127.0.0.1:9/v1"), client=client)


def test_only_a_key_means_openai_default_and_the_description_names_its_source(tmp_path):
    from lc_async_pipelines.models import describe, resolve_model

    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=sk-from-file\n")
    from_file = resolve_model(ModelSettings.from_env({}, env_file=env_file))
    line = describe(from_file)
    assert from_file.model == "gpt-4o-mini"
    assert line == "model gpt-4o-mini at https://api.openai.com/v1 (key from .env)"
    from_env = ModelSettings.from_env({"OPENAI_API_KEY": "sk-secret-env"}, env_file=env_file)
    assert "key from environment" in describe(from_env) and "sk-" not in describe(from_env)


def test_a_provider_whose_package_is_missing_is_a_configuration_error():
    from lc_async_pipelines.errors import ConfigurationError

    # langchain-anthropic is in the dev extras now; langchain-cohere is not
    with pytest.raises(ConfigurationError, match="langchain-cohere"):
        make_chat_model(ModelSettings(model="cohere:command-r"))


def test_an_anthropic_model_takes_its_key_and_endpoint_from_anthropic_variables(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-ant-from-file-0123\n")
    environ = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9/", "OPENAI_API_KEY": "sk-openai-0123"}
    settings = ModelSettings.from_env(environ, env_file=env_file, model="anthropic:claude-x")
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-ant-from-file-0123"
    line = describe(settings)
    assert line == "model claude-x from provider anthropic at http://127.0.0.1:9/ (key from .env)"
    model = make_chat_model(settings)
    assert model.anthropic_api_key.get_secret_value() == "sk-ant-from-file-0123"
    assert model.anthropic_api_url == "http://127.0.0.1:9/"
    # an OpenAI model in the same environment keeps the OpenAI variables
    openai_settings = ModelSettings.from_env(environ, env_file=env_file, model="gpt-4o-mini")
    assert openai_settings.api_key.get_secret_value() == "sk-openai-0123"


def test_bad_numbers_in_the_environment_name_the_variable():
    from lc_async_pipelines.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="PIPELINES_TEMPERATURE"):
        ModelSettings.from_env({"PIPELINES_TEMPERATURE": "hot"}, env_file=None)


def test_tpm_is_charged_as_the_endpoint_s_provider_counts_it():
    from pydantic import SecretStr

    key = SecretStr("sk-test")
    # OpenAI and Azure count max_tokens when they admit a request
    assert ModelSettings(api_key=key).tpm_charge == "max_tokens"
    assert (
        ModelSettings(api_key=key, base_url="https://api.openai.com/v1").tpm_charge == "max_tokens"
    )
    azure = "https://team.openai.azure.com/openai/v1"
    assert ModelSettings(api_key=key, base_url=azure).tpm_charge == "max_tokens"
    # the rest settle to real usage (or have no TPM of their own)
    assert ModelSettings(api_key=key, base_url="http://127.0.0.1:8000/v1").tpm_charge == "usage"
    assert ModelSettings(model="anthropic:claude-3-5-haiku").tpm_charge == "usage"
    assert ModelSettings().tpm_charge == "usage"  # the embedded model


@pytest.mark.parametrize(
    ("settings", "known"),
    [
        ({}, False),  # the embedded model
        ({"api_key": "sk-x"}, True),  # OpenAI's own API
        ({"api_key": "sk-x", "base_url": "https://x.openai.azure.com/openai/v1"}, True),
        ({"model": "anthropic:claude-x", "api_key": "k"}, True),
        ({"base_url": "http://127.0.0.1:8080/v1", "model": "mock"}, False),  # self-hosted
        ({"base_url": "http://vllm.internal:8000/v1", "api_key": "k"}, False),
    ],
)
def test_known_provider_tells_a_billed_endpoint_from_a_self_hosted_one(settings, known):
    assert ModelSettings(**settings).known_provider is known


@pytest.mark.parametrize("value", ["0", "-2", "abc", "1.5"])
def test_embedded_threads_must_be_a_positive_integer(value):
    from lc_async_pipelines.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"^PIPELINES_EMBEDDED_THREADS: ") as raised:
        ModelSettings.from_env({"PIPELINES_EMBEDDED_THREADS": value}, env_file=None)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "threads"), [({}, None), ({"PIPELINES_EMBEDDED_THREADS": "1"}, "1")]
)
async def test_the_thread_setting_reaches_the_embedded_server_of_a_session(
    monkeypatch, tmp_path, environ, threads
):
    from lc_async_pipelines import models
    from lc_async_pipelines.embedded import EmbeddedModelServer
    from lc_async_pipelines.errors import EmbeddedModelError
    from lc_async_pipelines.session import model_session

    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "llama-server"))
    monkeypatch.setenv("PIPELINES_MODEL_PATH", str(tmp_path / "model.gguf"))
    seen = []

    class Recording(EmbeddedModelServer):
        async def astart(self):
            seen.append(self.command())
            raise EmbeddedModelError("not started in unit tests")

    monkeypatch.setattr(models, "EmbeddedModelServer", Recording)
    settings = ModelSettings.from_env(environ, env_file=None)
    with pytest.raises(EmbeddedModelError, match="not started"):
        async with model_session(settings):
            pass
    command = seen[0]
    assert ("--threads" in command) == (threads is not None)
    if threads is not None:
        assert command[command.index("--threads") + 1] == threads
