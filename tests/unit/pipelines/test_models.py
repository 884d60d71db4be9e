import logging

import pytest

from lc_async_pipelines.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_SAMPLING
from lc_async_pipelines.models import ModelSettings, make_chat_model


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
    assert llm.max_retries == 0 and llm.streaming


def test_hosted_client_sends_no_llama_options():
    settings = ModelSettings.from_env(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "PIPELINES_MODEL": "m"}, env_file=None
    )
    llm = make_chat_model(settings)
    assert llm.extra_body is None and llm.openai_api_base == "http://127.0.0.1:9/v1"
