"""Helpers of the command-line tests: a fake model session for every run."""

from contextlib import asynccontextmanager

from lc_async_pipelines import session as session_module


def use_model(monkeypatch, model):
    """Make every run's model session yield ``model`` (no server, no network)."""

    @asynccontextmanager
    async def session(settings=None, **_):
        yield model

    monkeypatch.setattr(session_module, "chat_model_session", session)
