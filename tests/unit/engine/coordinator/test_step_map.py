"""StepMap: the persistent map of an execution's steps (rb_engine.coordinator.step_map)."""

from __future__ import annotations

import pickle

from rb_engine.coordinator.state import ExecutionState, StepState
from rb_engine.coordinator.step_map import StepMap


def test_set_makes_a_new_map_and_leaves_the_old_one_as_it_was() -> None:
    old = StepMap({"a": StepState(id="a"), "b": StepState(id="b")})
    new = old.set("a", StepState(id="a", attempt=1))
    assert old["a"].attempt == 0 and new["a"].attempt == 1
    assert new["b"] is old["b"]
    assert list(new) == ["a", "b"]  # a step set again keeps its place


def test_it_iterates_in_insertion_order_like_the_dict_it_replaces() -> None:
    ids = [f"s{i}" for i in range(200, 0, -1)]  # not hash or sorted order
    steps = StepMap((sid, StepState(id=sid)) for sid in ids)
    more = steps.set("new", StepState(id="new")).updated(
        {"x[0]": StepState(id="x[0]"), "s5": StepState(id="s5")}
    )
    assert list(steps) == ids
    assert list(more) == [*ids, "new", "x[0]"]
    assert len(more) == 202 and "x[0]" in more and "y" not in more
    assert more.get("y") is None and more.get("y", 1) == 1


def test_equal_to_a_dict_with_the_same_steps_and_picklable() -> None:
    plain = {"a": StepState(id="a"), "b": StepState(id="b", attempt=2)}
    steps = StepMap(plain)
    assert steps == plain and steps == StepMap(plain)
    assert steps != StepMap({"a": StepState(id="a")})
    again = pickle.loads(pickle.dumps(steps))
    assert again == steps and list(again) == ["a", "b"]


def test_a_state_built_with_a_dict_holds_a_step_map() -> None:
    state = ExecutionState(steps={"a": StepState(id="a")})
    assert isinstance(state.steps, StepMap) and state.steps["a"].id == "a"
