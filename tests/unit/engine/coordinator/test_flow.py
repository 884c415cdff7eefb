"""The steps the coordinator runs itself (wait, branch, for_each, wait_for_event) and retrying a
failed step: driven through the one applier (harness.Drive), each stream replayed VERIFIED."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import Drive

from rb_common.events import Event, EventType
from rb_common.settings import Settings
from rb_engine.coordinator import decide
from rb_engine.coordinator.applier import controlled
from rb_engine.coordinator.inbound import received
from rb_engine.coordinator.retries import refusal
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

FATAL = ("fail", False)
SHELL = "type: shell, inputs: {command: [echo]}"


def rb(steps: str, extra: str = "") -> str:
    return f"id: t\nname: T\n{extra}\nsteps:\n{steps}"


def verified(events: list[Event]) -> bool:
    report = asyncio.run(Replayer(PluginExecutor(default_registry()), Settings()).replay(events))
    assert report.deviations == [], [str(d) for d in report.deviations]
    return report.verified


def of_type(d: Drive, type_: EventType) -> list[dict[str, Any]]:
    return [e.data for e in d.events if e.type == type_]


def start(d: Drive) -> None:
    """Request the execution and run only what is decided at once (no timer fires)."""
    from rb_common.loader import load_runbook_text
    from rb_engine.coordinator.applier import requested

    runbook, _ = load_runbook_text(d.yaml_text)
    data = {"runbook": runbook.snapshot(), "params": d.params, "facts": d.facts, "waits": "timers"}
    d.apply(requested(d.state, data, "tests"))


# -- wait -------------------------------------------------------------------------------------


def test_wait_seconds_is_a_timer_in_the_coordinator_not_a_worker() -> None:
    d = Drive(
        rb(f"  - {{id: w, type: wait, inputs: {{seconds: 60s}}}}\n  - {{id: b, {SHELL}, depends_on: [w]}}\n")
    )
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert [e["step_id"] for e in of_type(d, EventType.STEP_SCHEDULED)] == ["b"]  # no task for the wait
    (timer,) = of_type(d, EventType.TIMER_STARTED)
    assert timer["timer_id"] == "w@1" and timer["fire_at"].startswith("2025-01-01T00:01:00")
    assert state.steps["w"].result == {"waited_seconds": 60.0}
    assert verified(d.events)


def test_cancel_during_a_long_wait_ends_at_once() -> None:
    d = Drive(rb("  - {id: w, type: wait, inputs: {seconds: 60}}\n"))
    start(d)
    assert d.state.steps["w"].status == "RUNNING" and d.state.pending_timers()
    applied = d.apply(controlled(d.state, "execution.cancel_requested", {"reason": "ops"}, "key:ops"))
    assert d.state.status == "CANCELLED"
    assert d.state.steps["w"].error == "cancelled" and applied.cancel == ["w"]
    assert verified(d.events)


def test_pause_holds_new_steps_and_lets_a_wait_finish() -> None:
    d = Drive(
        rb(f"  - {{id: w, type: wait, inputs: {{seconds: 5}}}}\n  - {{id: b, {SHELL}, depends_on: [w]}}\n")
    )
    start(d)
    d.apply(controlled(d.state, "execution.paused", {}, "key:ops"))
    d.fire_next_timer()
    assert d.state.steps["w"].status == "SUCCEEDED"  # running steps finish
    assert d.state.steps["b"].status == "PENDING" and decide(d.state) == []  # nothing new starts
    applied = d.apply(controlled(d.state, "execution.resumed", {}, "key:ops"))
    assert [c.step_id for c in applied.run] == ["b"]
    assert d.drive(applied).status == "SUCCEEDED"
    assert verified(d.events)


def test_wait_until_polls_on_timers_until_it_holds() -> None:
    d = Drive(rb("  - {id: w, type: wait, inputs: {until: 'execution.duration > 25', poll_interval: 10s}}\n"))
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert [t["timer_id"] for t in of_type(d, EventType.TIMER_STARTED)] == ["w@1#1", "w@1#2", "w@1#3"]
    assert state.steps["w"].result["polls"] == 4
    assert verified(d.events)


def test_wait_until_times_out_and_fails_the_step() -> None:
    d = Drive(
        rb(
            "  - {id: w, type: wait, inputs: {until: 'execution.duration < 0', poll_interval: 10s, timeout: 25s}}\n"
        )
    )
    state = d.run()
    assert state.status == "FAILED"
    assert "still false after 25" in (state.steps["w"].error or "")
    assert verified(d.events)


# -- branch -----------------------------------------------------------------------------------


BRANCH = """\
  - id: pick
    type: branch
    inputs:
      cases:
        - {when: "params.size > 10", then: [big]}
        - {when: "params.size > 5", then: [medium]}
      else: [small]
  - {id: big, SHELL, depends_on: [pick]}
  - {id: medium, SHELL, depends_on: [pick]}
  - {id: small, SHELL, depends_on: [pick]}
  - {id: after_big, SHELL, depends_on: [big]}
""".replace("SHELL", SHELL)


def test_branch_runs_the_first_true_case_and_skips_the_other_sides() -> None:
    d = Drive(rb(BRANCH), params={"size": 7})
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert state.steps["pick"].outputs == {"case": 1, "taken": ["medium"], "skipped": ["big", "small"]}
    statuses = {sid: state.steps[sid].status for sid in ("big", "medium", "small", "after_big")}
    assert statuses == {"big": "SKIPPED", "medium": "SUCCEEDED", "small": "SKIPPED", "after_big": "SKIPPED"}
    assert state.steps["big"].skip_reason == "branch 'pick' took another side"
    assert verified(d.events)


def test_branch_else_and_the_older_if_form() -> None:
    d = Drive(rb(BRANCH), params={"size": 1})
    assert d.run().steps["small"].status == "SUCCEEDED"
    old = rb(
        "  - {id: b, type: branch, inputs: {if: '${params.go}', then: [x], else: [y]}}\n"
        f"  - {{id: x, {SHELL}, depends_on: [b]}}\n  - {{id: y, {SHELL}, depends_on: [b]}}\n"
    )
    d = Drive(old, params={"go": True})
    state = d.run()
    assert (state.steps["x"].status, state.steps["y"].status) == ("SUCCEEDED", "SKIPPED")
    assert verified(d.events)


# -- for_each ---------------------------------------------------------------------------------


LOOP = """\
  - id: loop
    type: for_each
    inputs:
      items: ITEMS
      concurrency: 2
      step: {type: shell, inputs: {command: [echo, "${item}", "n${index}"]}, outputs: {n: "$.n"}}
  - {id: after, type: shell, depends_on: [loop], inputs: {command: [echo, "count=${steps.loop.outputs.count}"]}}
"""
N = {f"loop[{i}]": [{"n": i}] for i in range(3)}


def test_for_each_runs_one_sub_step_per_item_with_item_and_index() -> None:
    d = Drive(rb(LOOP.replace("ITEMS", "[a, b, c]")), script=N)
    state = d.run()
    assert state.status == "SUCCEEDED"
    scheduled = {e["step_id"]: e["inputs"] for e in of_type(d, EventType.STEP_SCHEDULED)}
    assert scheduled["loop[2]"] == {"command": ["echo", "c", "n2"]}
    assert scheduled["after"] == {"command": ["echo", "count=3"]}
    assert state.steps["loop"].outputs == {"results": [{"n": 0}, {"n": 1}, {"n": 2}], "count": 3}
    assert d.batches[0] == ["loop[0]", "loop[1]"]  # concurrency 2
    assert verified(d.events)


def test_for_each_computed_items_over_the_cap_fail_at_run_time() -> None:
    d = Drive(rb(LOOP.replace("ITEMS", "'${params.hosts}'")), params={"hosts": list(range(1001))})
    state = d.run()
    assert state.status == "FAILED"
    assert state.steps["loop"].error == "'items' has 1001 items, over the cap of 1000"
    assert not of_type(d, EventType.STEP_SCHEDULED)
    assert verified(d.events)


def test_a_failed_iteration_fails_the_loop_after_the_others_finish() -> None:
    d = Drive(rb(LOOP.replace("ITEMS", "[a, b, c]")), script={**N, "loop[0]": [FATAL]})
    state = d.run()
    assert state.status == "FAILED"
    assert state.steps["loop[2]"].status == "SUCCEEDED"
    assert (state.steps["loop"].error or "").startswith("1 of 3 iterations failed; first: [0]")
    assert verified(d.events)


# -- wait_for_event ---------------------------------------------------------------------------


EVENT = """\
  - id: deployed
    type: wait_for_event
    inputs: {subject: deploy.finished, correlation: "${params.change}", timeout: 1h}
  - {id: after, type: shell, depends_on: [deployed], inputs: {command: [echo, "${steps.deployed.outputs.data.version}"]}}
"""


def test_wait_for_event_resumes_only_on_its_correlation() -> None:
    d = Drive(rb(EVENT), params={"change": "CHG-1"})
    start(d)
    assert d.state.steps["deployed"].status == "RUNNING"
    assert received(d.state, "deploy.finished", "CHG-2", {"version": "x"}, "e1") == []
    assert received(d.state, "deploy.other", "CHG-1", {"version": "x"}, "e1") == []
    applied = d.apply(received(d.state, "deploy.finished", "CHG-1", {"version": "v7"}, "e2"))
    assert d.state.steps["deployed"].outputs["data"] == {"version": "v7"}
    assert received(d.state, "deploy.finished", "CHG-1", {"version": "v8"}, "e3") == []  # once
    state = d.drive(applied)
    assert state.status == "SUCCEEDED"
    assert of_type(d, EventType.STEP_SCHEDULED)[-1]["inputs"] == {"command": ["echo", "v7"]}
    assert verified(d.events)


def test_wait_for_event_times_out_on_its_timer() -> None:
    d = Drive(rb(EVENT), params={"change": "CHG-1"})
    state = d.run()
    assert state.status == "FAILED"
    assert "no event 'deploy.finished'" in (state.steps["deployed"].error or "")
    assert verified(d.events)


# -- retrying a failed step -------------------------------------------------------------------


RETRY = f"""\
  - {{id: a, {SHELL}, outputs: {{v: $.v}}}}
  - {{id: b, {SHELL}, depends_on: [a], outputs: {{v: $.v}}}}
  - {{id: c, {SHELL}, depends_on: [b]}}
  - {{id: d, {SHELL}, depends_on: [a]}}
"""


def test_retry_reruns_only_the_failed_step_and_its_dependants_and_replays() -> None:
    d = Drive(rb(RETRY, "defaults: {concurrency: 1}"), script={"a": [{"v": 1}], "b": [FATAL, {"v": 2}]})
    state = d.run()
    assert state.status == "FAILED" and state.steps["c"].status == "SKIPPED"
    assert refusal(state, "a") == (409, "step 'a' did not fail (it is SUCCEEDED)")
    assert refusal(state, "zz") is not None and refusal(state, "zz")[0] == 404  # type: ignore[index]
    assert refusal(state, "b") is None
    first = len(d.events)
    facts = controlled(state, "step.retry_requested", {"step_id": "b", "requested_via": "api"}, "key:ops")
    state = d.drive(d.apply(facts))
    assert state.status == "SUCCEEDED"
    rerun = [e["step_id"] for e in of_type(d, EventType.STEP_SCHEDULED)[-3:]]
    again = [e.data for e in d.events[first:] if e.type == EventType.STEP_SCHEDULED]
    assert sorted(x["step_id"] for x in again) == sorted({"b", "c", "d"} & set(rerun) | {"b", "c"})
    assert "a" not in {x["step_id"] for x in again}
    b_again = next(x for x in again if x["step_id"] == "b")
    assert b_again["attempt"] == 2 and b_again["idempotency_key"] == "ex1:b:2"
    assert state.steps["a"].outputs == {"v": 1}
    assert [e.type for e in d.events].count(EventType.EXECUTION_FAILED) == 1
    assert d.events[-1].type == EventType.EXECUTION_SUCCEEDED
    assert verified(d.events)
    assert controlled(state, "step.retry_requested", {"step_id": "b"}, "key:ops") == []  # not failed now


def test_retrying_a_failed_loop_runs_its_iterations_under_new_keys() -> None:
    d = Drive(
        rb(LOOP.replace("ITEMS", "[a, b]")), script={"loop[0]": [FATAL, {"n": 0}], "loop[1]": [{"n": 1}]}
    )
    state = d.run()
    assert state.status == "FAILED" and state.steps["loop"].status == "FAILED"
    first = {e.data["idempotency_key"] for e in d.events if e.type == EventType.STEP_SCHEDULED}
    d.script = {"loop[0]": [{"n": 0}], "loop[1]": [{"n": 1}]}
    state = d.drive(d.apply(controlled(state, "step.retry_requested", {"step_id": "loop"}, "key:ops")))
    assert state.status == "SUCCEEDED"
    keys = [e.data["idempotency_key"] for e in d.events if e.type == EventType.STEP_SCHEDULED]
    again = keys[len(first) :]
    assert again == ["ex1:loop[0]:101", "ex1:loop[1]:101", "ex1:after:1"] and not first & set(again)
    assert state.steps["loop"].outputs == {"results": [{"n": 0}, {"n": 1}], "count": 2}
    assert verified(d.events)


def test_a_loop_of_waits_runs_on_timers_without_workers() -> None:
    body = "  - {id: loop, type: for_each, inputs: {items: [5, 10], step: {type: wait, inputs: {seconds: '${item}'}}}}\n"
    d = Drive(rb(body))
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert not of_type(d, EventType.STEP_SCHEDULED)
    assert [t["timer_id"] for t in of_type(d, EventType.TIMER_STARTED)] == ["loop[0]@1", "loop[1]@1"]
    assert state.steps["loop"].outputs == {"results": [{}, {}], "count": 2}
    assert verified(d.events)


def test_wait_until_without_a_timeout_stops_at_the_steps_timeout() -> None:
    d = Drive(
        rb(
            "  - {id: w, type: wait, timeout: 30s, inputs: {until: 'execution.duration < 0', poll_interval: 10s}}\n"
        )
    )
    state = d.run()
    assert state.status == "FAILED" and "(timeout 30s)" in (state.steps["w"].error or "")
    assert verified(d.events)
