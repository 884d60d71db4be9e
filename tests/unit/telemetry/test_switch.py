"""What switches telemetry on, and that off it costs nothing: nothing imported, nothing attached."""

import subprocess
import sys
import textwrap

import pytest

from lc_async_pipelines import telemetry
from lc_async_pipelines.cli import main
from lc_async_pipelines.errors import ConfigurationError


def run_python(code: str, **env: str) -> str:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**environ, **env},
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


OFF_RUN = """
    import asyncio, sys
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.runnables import RunnableLambda
    from lc_async_pipelines import telemetry
    from lc_async_pipelines.runner import Item, RateBudget, run_items, with_budget

    seen = []

    def probe(value, config):
        seen.append([type(h).__name__ for h in config["callbacks"].handlers])
        return value

    async def go():
        llm = with_budget(GenericFakeChatModel(messages=iter([AIMessage(content="ok")])), RateBudget())
        chain = RunnableLambda(probe) | llm
        return [r async for r in run_items(chain, [Item("x", 1, "hi")])]

    [record] = asyncio.run(go())
    ours = [m for m in sys.modules if m.startswith("lc_async_pipelines.telemetry.")]
    print(record.ok, telemetry.current(), ours, seen)
"""


def test_off_nothing_is_imported_and_no_handler_is_attached():
    # a fresh process: the item's chain sees only the runner's own handlers (the
    # item's call metrics, its notes among them), and no module of ours that imports
    # OpenTelemetry is loaded
    assert run_python(OFF_RUN) == "True None [] [['ItemCalls']]"


def test_an_endpoint_in_the_environment_switches_it_on_at_model_session():
    code = """
        from lc_async_pipelines import telemetry
        active = telemetry.enable_from_environment()
        print(type(active).__name__, active.capture_content)
        telemetry.shutdown_telemetry()
    """
    assert run_python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == "Telemetry False"
    disabled = run_python(
        code.replace("active.capture_content", "active is None").replace(
            "type(active).__name__", "'off'"
        ),
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_SDK_DISABLED="true",
    )
    assert disabled == "off True"


def test_an_apps_global_tracer_provider_is_used():
    code = """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from lc_async_pipelines import telemetry
        print(telemetry.enable_from_environment())
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        print(telemetry.enable_from_environment().tracer_provider is provider)
    """
    assert run_python(code).splitlines() == ["None", "True"]


def test_without_the_extra_configuring_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(telemetry, "_installed", lambda: False)
    with pytest.raises(ConfigurationError, match=r"otel extra"):
        telemetry.configure_telemetry("http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert telemetry.enable_from_environment() is None
    assert telemetry.current() is None


def test_a_trace_url_that_is_not_http_is_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "story", "--input", "x.txt", "--output", "o.jsonl", "--trace", "localhost"])
    assert exit_.value.code == 2
    assert "--trace" in capsys.readouterr().err
