"""The collector setting of `pipelines run`: start-up frozen, young collections rarer, once."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lc_async_pipelines.cli import _heap


@pytest.fixture
def fresh_heap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what settle_heap does to this (test) process."""
    thresholds = gc.get_threshold()
    monkeypatch.setattr(_heap, "_settled", False)
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("fresh_heap")
def test_settle_heap_freezes_start_up_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    _heap.settle_heap()
    assert gc.get_freeze_count() > 10_000  # the imported stack, out of the collector's walk
    assert gc.get_threshold() == (50_000, 20, 100)


@pytest.mark.usefixtures("fresh_heap")
def test_settle_heap_acts_once_per_process() -> None:
    _heap.settle_heap()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    _heap.settle_heap()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)
