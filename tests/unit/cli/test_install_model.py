"""``pipelines install-model`` when everything is already there: nothing installed or built, twice."""

from lc_async_pipelines import cli


def test_install_model_finds_both_parts_and_does_nothing(tmp_path, monkeypatch, capsys):
    gguf, server = tmp_path / "model.gguf", tmp_path / "llama-server"
    gguf.write_bytes(b"GGUF")
    server.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PIPELINES_MODEL_PATH", str(gguf))
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(server))
    monkeypatch.setenv("PIPELINES_CACHE_DIR", str(tmp_path / "cache"))
    for _ in range(2):
        assert cli.main(["install-model"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            f"model:        {gguf} (already installed)",
            f"llama-server: {server} (already built)",
        ]
