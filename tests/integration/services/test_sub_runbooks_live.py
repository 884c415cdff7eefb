"""Sub-runbooks through the running stack (API, executor, recorder as OS processes, NATS,
PostgreSQL): the child is started from the registry's APPROVED revision, linked both ways,
its outcome is the step's, cancelling the parent cancels it, and both streams replay VERIFIED."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from services_support import Services, api, approve, wait_for_event, wait_terminal
from test_stack_e2e import Stack

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.settings import Settings
from rb_engine.child_runs import child_execution_id
from rb_engine.coordinator import fold
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration


def child_yaml(runbook_id: str) -> str:
    return f"""
id: {runbook_id}
name: Child
parameters:
  type: object
  properties: {{who: {{type: string}}, nap: {{type: number, default: 0}}}}
  required: [who]
steps:
  - {{id: greet, type: transform, inputs: {{message: "hello ${{params.who}}"}}, outputs: {{message: $.message}}}}
  - {{id: nap, type: wait, depends_on: [greet], inputs: {{seconds: "${{params.nap}}"}}}}
"""


def parent_yaml(runbook_id: str, child: str, nap: int = 0) -> str:
    return f"""
id: {runbook_id}
name: Parent
steps:
  - id: call
    type: runbook
    timeout: 120s
    inputs: {{runbook: {child}, params: {{who: ops, nap: {nap}}}}}
    outputs: {{message: $.outputs.greet.message}}
"""


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    return Stack(services, postgres_database)


def register(stack: Stack, text: str, runbook_id: str, *, approved: bool = True) -> None:
    response = api.post(f"{stack.base}/runbooks", content=text, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    if approved:
        assert approve(stack.base, runbook_id).status_code == 200


async def detail(stack: Stack, execution_id: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"{stack.base}/executions/{execution_id}")
        if response.status_code == 200 and predicate(response.json()):
            return dict(response.json())
        await asyncio.sleep(0.2)
    raise AssertionError(f"{execution_id}: {response.text}\n" + stack.services.logs())


async def replay_verified(events: list[Any]) -> None:
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]


async def test_a_child_run_is_linked_both_ways_and_replays(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    suffix = uuid.uuid4().hex[:8]
    child, parent = f"child-{suffix}", f"parent-{suffix}"
    register(stack, child_yaml(child), child)
    register(stack, parent_yaml(parent, child), parent)
    response = stack.execute(parent, json={})
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    events = await wait_terminal(bus, execution_id, timeout=60)
    state = fold(events)
    assert state.status == "SUCCEEDED", (state.reason, stack.services.logs())
    assert state.steps["call"].outputs == {"message": "hello ops"}
    child_id = child_execution_id(f"{execution_id}:call:1")
    assert state.steps["call"].result["execution_id"] == child_id
    child_events = await wait_terminal(bus, child_id)
    requested = child_events[0].data
    assert requested["parent"] == {"execution_id": execution_id, "step_id": "call"}
    assert requested["depth"] == 1
    assert requested["trigger"]["revision"] == 1 and requested["trigger"]["type"] == "runbook"
    assert requested["actor"] == events[0].data["trigger"]["actor"]  # the parent's requester
    assert requested["actor"].startswith("key:")
    assert fold(child_events).status == "SUCCEEDED"
    shown = await detail(stack, execution_id, lambda d: d["children"] and d["status"] == "SUCCEEDED")
    assert shown["children"] == [
        {"id": child_id, "step_id": "call", "runbook_id": child, "status": "SUCCEEDED"}
    ]
    assert shown["parent"] is None
    shown = await detail(stack, child_id, lambda d: d["status"] == "SUCCEEDED")
    assert shown["parent"] == {"execution_id": execution_id, "step_id": "call", "depth": 1}
    query = "query($id: String!) { runbookExecution(id: $id) { parent children } }"
    graphql = api.post(
        stack.base.replace("/api/v1", "/graphql"), json={"query": query, "variables": {"id": execution_id}}
    )
    assert graphql.status_code == 200, graphql.text
    assert graphql.json()["data"]["runbookExecution"]["children"][0]["id"] == child_id
    await replay_verified(events)
    await replay_verified(child_events)


async def test_an_unapproved_child_is_refused_and_fails_the_step(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    suffix = uuid.uuid4().hex[:8]
    child, parent = f"draft-{suffix}", f"parent-{suffix}"
    register(stack, child_yaml(child), child, approved=False)
    register(stack, parent_yaml(parent, child), parent)
    execution_id = stack.execute(parent, json={}).json()["execution_id"]
    state = fold(await wait_terminal(bus, execution_id, timeout=60))
    assert state.status == "FAILED"
    assert "is not a registered runbook with an APPROVED revision" in (state.steps["call"].error or "")


async def test_cancelling_the_parent_cancels_the_child(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    suffix = uuid.uuid4().hex[:8]
    child, parent = f"slow-{suffix}", f"parent-{suffix}"
    register(stack, child_yaml(child), child)
    register(stack, parent_yaml(parent, child, nap=60), parent)
    execution_id = stack.execute(parent, json={}).json()["execution_id"]
    child_id = child_execution_id(f"{execution_id}:call:1")
    await wait_for_event(
        bus, child_id, lambda e: e.type == EventType.STEP_WAITING and e.data["step_id"] == "nap"
    )
    began = time.monotonic()
    response = api.post(f"{stack.base}/executions/{execution_id}/cancel", json={"reason": "enough"})
    assert response.status_code == 202, response.text
    parent_events = await wait_terminal(bus, execution_id, timeout=30)
    child_events = await wait_terminal(bus, child_id, timeout=30)
    took = time.monotonic() - began
    assert fold(parent_events).status == "CANCELLED"
    assert fold(child_events).status == "CANCELLED"
    assert took < 2, f"the child ended {took:.1f}s after the parent's cancel"
    [asked] = [e for e in child_events if e.type == EventType.EXECUTION_CANCEL_REQUESTED]
    assert asked.data["reason"] == "its parent step call was cancelled"
    await replay_verified(parent_events)
    await replay_verified(child_events)


async def test_a_self_recursive_runbook_ends_cleanly_at_the_depth_cap(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    runbook_id = f"recurse-{uuid.uuid4().hex[:8]}"
    text = f"id: {runbook_id}\nname: Recurse\nsteps:\n  - {{id: again, type: runbook, timeout: 120s, inputs: {{runbook: {runbook_id}}}}}\n"
    register(stack, text, runbook_id)
    chain = [stack.execute(runbook_id, json={}).json()["execution_id"]]
    for _ in range(5):
        chain.append(child_execution_id(f"{chain[-1]}:again:1"))
    deepest = fold(await wait_terminal(bus, chain[-1], timeout=90))
    assert deepest.steps["again"].error == "sub-runbook depth 6 exceeds the cap of 5"
    for execution_id in reversed(chain):
        events = await wait_terminal(bus, execution_id, timeout=60)
        assert fold(events).status == "FAILED"
        await replay_verified(events)
    assert not await bus_has(bus, child_execution_id(f"{chain[-1]}:again:1"))  # depth 6 never started


async def bus_has(bus: Bus, execution_id: str) -> bool:
    try:
        await bus.js.get_last_msg(bus.names.events_stream, bus.names.exec_subject(execution_id))
    except Exception:
        return False
    return True


async def test_a_worker_that_dies_leaves_its_child_to_the_next_one(stack: Stack, bus: Bus) -> None:
    procs = stack.start("recorder", "executor", "api")
    stack.wait_ready()
    suffix = uuid.uuid4().hex[:8]
    child, parent = f"child-{suffix}", f"parent-{suffix}"
    register(stack, child_yaml(child), child)
    register(stack, parent_yaml(parent, child, nap=4), parent)
    execution_id = stack.execute(parent, json={}).json()["execution_id"]
    child_id = child_execution_id(f"{execution_id}:call:1")
    await wait_for_event(
        bus, child_id, lambda e: e.type == EventType.STEP_WAITING and e.data["step_id"] == "nap"
    )
    stack.services.kill(procs["executor"])  # the coordinator and the worker following the child
    stack.start("executor")
    events = await wait_terminal(bus, execution_id, timeout=90)
    state = fold(events)
    assert state.status == "SUCCEEDED", (state.reason, stack.services.logs())
    assert state.steps["call"].attempt == 1 and state.steps["call"].result["execution_id"] == child_id
    assert fold(await wait_terminal(bus, child_id)).status == "SUCCEEDED"
    assert not await bus_has(bus, child_execution_id(f"{execution_id}:call:2"))  # no second child
    [requested] = [e for e in await wait_terminal(bus, child_id) if e.type == EventType.EXECUTION_REQUESTED]
    assert requested.data["parent"]["execution_id"] == execution_id
    await replay_verified(events)
