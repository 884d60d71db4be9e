import pytest

from tests.unit.cli.helpers import use_model
from tests.unit.fakes import cycling_llm


@pytest.fixture
def fake_session(monkeypatch):
    use_model(monkeypatch, cycling_llm("A fine result."))
