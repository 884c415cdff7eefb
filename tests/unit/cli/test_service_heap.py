"""A service settles its heap before serving: what start-up made is frozen out of the full
collections, and the young generation is collected less often (rb_cli.services.settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rb_cli.services import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    gc.unfreeze()
    made_at_start: list[object] = []
    older, middle = gc.get_threshold()[1:]
    settle_heap()
    assert gc.get_freeze_count() > 10_000, "modules, classes and schemas made at start-up"
    assert all(obj is not made_at_start for obj in gc.get_objects()), "out of the collector's sight"
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, older, middle)
    made_later = [[] for _ in range(3)]
    assert any(obj is made_later[0] for obj in gc.get_objects(generation=0)), "new objects are collected"
