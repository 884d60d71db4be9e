"""The wheel claims one top-level name, and an app with its own prompts/ and callbacks/ imports it."""

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [built] = out.glob("lc_async_pipelines-*.whl")
    return built


def test_wheel_has_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"lc_async_pipelines"}
    for needed in (
        "lc_async_pipelines/py.typed",
        "lc_async_pipelines/static/index.html",
        "lc_async_pipelines/prompts/story.py",
        "lc_async_pipelines/callbacks/base.py",
        "lc_async_pipelines/runner/loop.py",
        "lc_async_pipelines/runner/costs/prices.json",
        "lc_async_pipelines/cli/commands/run.py",
        "lc_async_pipelines/service/__init__.py",
    ):
        assert needed in names
    # every package folder of the repository made it into the wheel
    for folder in ("pipelines", "prompts", "callbacks"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).parent
            prefix = (
                "lc_async_pipelines" if folder == "pipelines" else f"lc_async_pipelines/{folder}"
            )
            assert f"{prefix}/{rel}/__init__.py".replace("/./", "/") in names
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[lc_async_pipelines.pipelines]" in text and "story =" in text


def test_fresh_virtualenv_beside_an_app_with_its_own_prompts_and_callbacks(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    app = tmp_path / "app"
    for package in ("prompts", "callbacks"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f"OWNER = 'app {package}'\n")
        (app / package / "story.py").write_text("STORY = 'the app own story prompt'\n")
    (app / "main.py").write_text(
        textwrap.dedent(
            """
            import callbacks, prompts
            from prompts.story import STORY
            import lc_async_pipelines
            from lc_async_pipelines import build_story_chain, run_items, RunOptions, model_session
            from lc_async_pipelines.prompts import STORY_PROMPT
            from lc_async_pipelines.callbacks import TaggedCallbackHandler
            from langchain_core.language_models import GenericFakeChatModel
            from langchain_core.messages import AIMessage

            assert prompts.OWNER == "app prompts" and callbacks.OWNER == "app callbacks"
            assert STORY == "the app own story prompt"
            assert "topic" in STORY_PROMPT.input_variables
            llm = GenericFakeChatModel(messages=iter([AIMessage(content="Once.")]))
            print(build_story_chain(llm).invoke("a topic"), lc_async_pipelines.__version__)
            try:
                import fastapi  # noqa: F401
            except ImportError:
                print("no fastapi")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "main.py"], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "Once."
    # the library alone does not pull in the web service's dependencies
    assert "no fastapi" in done.stdout
    cli = subprocess.run(
        [str(venv / "bin" / "pipelines"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and cli.stdout.startswith("pipelines ")
