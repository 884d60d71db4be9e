"""A local Ray run's shared embedded server: started with the model settings' thread count."""

from contextlib import AsyncExitStack

import pytest

from lc_async_pipelines import embedded
from lc_async_pipelines.engines.ray import _with_embedded_server
from lc_async_pipelines.engines.recipe import ChainRecipe
from lc_async_pipelines.errors import EmbeddedModelError
from lc_async_pipelines.models import ModelSettings
from lc_async_pipelines.registry import registered_pipelines


async def test_the_shared_server_gets_the_thread_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "llama-server"))
    monkeypatch.setenv("PIPELINES_MODEL_PATH", str(tmp_path / "model.gguf"))
    seen = []

    class Recording(embedded.EmbeddedModelServer):
        async def astart(self):
            seen.append(self.command())
            raise EmbeddedModelError("not started in unit tests")

    monkeypatch.setattr(embedded, "EmbeddedModelServer", Recording)
    settings = ModelSettings.from_env({"PIPELINES_EMBEDDED_THREADS": "1"}, env_file=None)
    recipe = ChainRecipe(registered_pipelines()["story"], {}, settings)
    async with AsyncExitStack() as stack:
        with pytest.raises(EmbeddedModelError, match="not started"):
            await _with_embedded_server(stack, recipe, local=True)
    assert seen[0][seen[0].index("--threads") + 1] == "1"
