"""The registry lists the built-ins as plug-ins, even with no installed metadata."""

import pytest

from lc_async_pipelines import registry
from lc_async_pipelines.errors import ConfigurationError


@pytest.fixture
def no_metadata(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    registry.registered_pipelines.cache_clear()
    yield
    registry.registered_pipelines.cache_clear()


def test_a_source_tree_without_metadata_still_lists_every_builtin(no_metadata):
    assert sorted(registry.registered_pipelines()) == ["news", "story", "summary"]
    assert registry.load_pipeline("summary").splits_long_inputs


def test_an_unknown_name_lists_the_builtins(no_metadata):
    with pytest.raises(ConfigurationError, match="registered: news, story, summary"):
        registry.load_pipeline("sumary")


def test_the_builtins_come_first_in_their_order_then_the_others_by_name(monkeypatch):
    from importlib.metadata import EntryPoint

    group = registry.ENTRY_POINT_GROUP
    apps = [EntryPoint(n, "lc_async_pipelines.builtin:STORY", group) for n in ("zeta", "alpha")]
    everything = [*apps, *reversed(registry._BUILTIN_ENTRY_POINTS)]
    monkeypatch.setattr(registry, "entry_points", lambda group: everything)
    registry.registered_pipelines.cache_clear()
    try:
        names = list(registry.registered_pipelines())
    finally:
        registry.registered_pipelines.cache_clear()
    assert names == ["story", "summary", "news", "alpha", "zeta"]
