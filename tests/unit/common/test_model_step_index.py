"""Runbook.step looks steps up by id through an index built once (not a search per call)."""

from __future__ import annotations

import pytest

from rb_common.model import Runbook


def runbook(n: int) -> Runbook:
    steps = [{"id": f"s{i}", "type": "transform", "inputs": {"i": i}} for i in range(n)]
    steps.append(
        {"id": "loop", "type": "for_each", "inputs": {"items": [1, 2], "step": {"type": "transform"}}}
    )
    return Runbook.model_validate({"id": "big", "name": "big", "steps": steps})


def test_step_finds_every_step_and_for_each_iterations() -> None:
    rb = runbook(1000)
    assert all(rb.step(f"s{i}").inputs == {"i": i} for i in range(1000))
    body = rb.step("loop[1]")
    assert body.id == "loop[1]" and body.type == "transform" and body.on_failure == "continue"
    assert rb.step("loop[1]") is body
    with pytest.raises(KeyError):
        rb.step("missing")
    with pytest.raises(KeyError):
        rb.step("s1[0]")  # not a for_each


def test_the_index_is_neither_dumped_nor_compared_and_follows_a_copy() -> None:
    rb = runbook(3)
    fresh = runbook(3)
    rb.step("s1")
    assert rb == fresh and rb.snapshot() == fresh.snapshot()
    assert "_rb_step_index" not in rb.model_dump()
    copy = rb.model_copy(update={"steps": [rb.steps[2]]})
    assert copy.step("s2") is rb.steps[2]
    with pytest.raises(KeyError):
        copy.step("s1")
