"""Flow control against the running stack (API, executor, recorder as processes; NATS, PostgreSQL):
retrying a failed step, pause and resume, cancel during a long wait, wait_for_event."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from services_support import Services, api, approve, wait_for_event, wait_terminal
from test_stack_e2e import Stack

from rb_common.bus import Bus, read_execution
from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration

HEAD = 'version: 1.0.0\nlegal_basis: "tests"\n'


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    stack = Stack(services, postgres_database)
    stack.processes = stack.start("recorder", "executor", "api")  # type: ignore[attr-defined]
    stack.wait_ready()
    return stack


def register(stack: Stack, body: str) -> str:
    runbook_id = f"flow-{uuid.uuid4().hex[:8]}"
    text = f"id: {runbook_id}\nname: Flow\n{HEAD}{body}"
    response = api.post(f"{stack.base}/runbooks", content=text, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert approve(stack.base, runbook_id).status_code == 200
    return runbook_id


def execute(stack: Stack, runbook_id: str, params: dict[str, Any] | None = None) -> str:
    response = stack.execute(runbook_id, json={"params": params or {}})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def scheduled(events: list[Event]) -> list[str]:
    return [e.data["step_id"] for e in events if e.type == EventType.STEP_SCHEDULED]


async def all_events(bus: Bus, execution_id: str) -> list[Event]:
    return [event for event, _ in await read_execution(bus, execution_id)]


async def recorded_status(
    stack: Stack, execution_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    """The API's view (the recorder's projection) once it shows `status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"{stack.base}/executions/{execution_id}")
        if response.status_code == 200 and response.json()["status"] == status:
            return dict(response.json())
        await asyncio.sleep(0.1)
    raise AssertionError(f"{execution_id} never shown {status}:\n" + stack.services.logs())


def rb(stack: Stack, *args: str) -> str:
    """The `rb` CLI against the stack (RB_API_ADDR and RB_API_KEY from its environment)."""
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", *args],
        capture_output=True,
        text=True,
        env=stack.services.env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


RETRY = """\
parameters: {type: object, properties: {marker: {type: string}}}
steps:
  - {id: a, type: transform, inputs: {n: 1}, outputs: {n: $.n}}
  - {id: b, type: shell, depends_on: [a], inputs: {command: [test, -f, "${params.marker}"]}}
  - {id: c, type: transform, depends_on: [b], inputs: {n: "${steps.a.outputs.n}"}, outputs: {n: $.n}}
"""


async def test_retry_reruns_the_failed_step_and_its_dependants_and_replays_verified(
    stack: Stack, bus: Bus, tmp_path: Path
) -> None:
    # Shell steps run as nobody: the marker sits where nobody can look.
    shared = Path(tempfile.mkdtemp(prefix="rb-flow-"))
    shared.chmod(0o755)
    marker = shared / "ready"
    execution_id = execute(stack, register(stack, RETRY), {"marker": str(marker)})
    first = await wait_terminal(bus, execution_id)
    assert fold(first).status == "FAILED", stack.services.logs()
    await recorded_status(stack, execution_id, "FAILED")
    refused = api.post(f"{stack.base}/executions/{execution_id}/steps/a/retry")
    assert refused.status_code == 409 and "did not fail" in refused.json()["detail"]

    marker.write_text("now it exists")
    marker.chmod(0o644)
    response = api.post(
        f"{stack.base}/executions/{execution_id}/steps/b/retry", json={"reason": "marker made"}
    )
    assert response.status_code == 202, response.text
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_SUCCEEDED)
    events = await all_events(bus, execution_id)
    again = events[len(first) :]
    assert again[0].type == EventType.STEP_RETRY_REQUESTED and again[0].data["reason"] == "marker made"
    assert scheduled(again) == ["b", "c"], "only the failed step and its dependant run again"
    assert scheduled(first) == ["a", "b"]
    b_keys = [
        e.data["idempotency_key"]
        for e in events
        if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "b"
    ]
    assert len(set(b_keys)) == 2
    detail = await recorded_status(stack, execution_id, "SUCCEEDED")
    assert {s["id"]: s["status"] for s in detail["steps"]} == {
        "a": "SUCCEEDED",
        "b": "SUCCEEDED",
        "c": "SUCCEEDED",
    }
    sse = api.get(f"{stack.base}/executions/{execution_id}/stream", timeout=20)
    assert "event: execution.failed" in sse.text and sse.text.rstrip().endswith("}"), sse.text[-300:]
    assert "event: execution.succeeded" in sse.text, "the stream goes on past the first end"
    replay = api.post(f"{stack.base}/executions/{execution_id}/replay")
    assert replay.status_code == 200 and replay.json()["verified"] is True, replay.text
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", "replay", execution_id, "--source", "nats"],
        capture_output=True,
        text=True,
        env={**stack.services.env, "RB_HOME": str(tmp_path / "empty-home")},
        timeout=60,
    )
    assert "REPLAY VERIFIED" in result.stdout, result.stdout + result.stderr
    marker.unlink()
    shared.rmdir()


PAUSE = """\
steps:
  - {id: w, type: wait, inputs: {seconds: 10}}
  - {id: b, type: transform, depends_on: [w], inputs: {n: 1}}
"""


async def test_pause_holds_new_steps_and_resume_continues(stack: Stack, bus: Bus) -> None:
    execution_id = execute(stack, register(stack, PAUSE))
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.TIMER_STARTED)
    assert "pause requested" in rb(stack, "pause", execution_id)
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_PAUSED)
    await wait_for_event(
        bus, execution_id, lambda e: e.type == EventType.STEP_SUCCEEDED and e.data["step_id"] == "w"
    )
    # What follows a recorded outcome is appended with it, in one write: nothing was.
    events = await all_events(bus, execution_id)
    assert "b" not in scheduled(events) and events[-1].type == EventType.STEP_SUCCEEDED
    await recorded_status(stack, execution_id, "PAUSED")
    assert "resume requested" in rb(stack, "resume", execution_id)
    events = await wait_terminal(bus, execution_id)
    assert fold(events).status == "SUCCEEDED" and "b" in scheduled(events)


LONG_WAIT = """\
steps:
  - {id: w, type: wait, inputs: {seconds: 60}}
  - {id: b, type: transform, depends_on: [w], inputs: {n: 1}}
"""


async def test_cancel_during_a_60_second_wait_ends_the_run_within_a_second(stack: Stack, bus: Bus) -> None:
    execution_id = execute(stack, register(stack, LONG_WAIT))
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.TIMER_STARTED)
    began = time.monotonic()
    response = api.post(f"{stack.base}/executions/{execution_id}/cancel", json={"reason": "wrong host"})
    assert response.status_code == 202, response.text
    ended = await wait_for_event(bus, execution_id, lambda e: e.type in TERMINAL_EVENTS, timeout=5)
    took = time.monotonic() - began
    assert ended.type == EventType.EXECUTION_CANCELLED
    print(f"cancel during a 60 s wait: ended {took:.3f}s after the request")
    assert took < 1.0, f"cancelled after {took:.2f}s"
    events = await all_events(bus, execution_id)
    request = next(e for e in events if e.type == EventType.EXECUTION_CANCEL_REQUESTED)
    assert request.actor.startswith("key:") and request.data["reason"] == "wrong host"
    assert scheduled(events) == [], "the wait held no worker"


EVENT = """\
parameters: {type: object, properties: {change: {type: string}}}
steps:
  - id: done
    type: wait_for_event
    inputs: {subject: deploy.finished, correlation: "${params.change}", timeout: 60s}
  - {id: after, type: transform, depends_on: [done], inputs: {v: "${steps.done.outputs.data.version}"}, outputs: {v: $.v}}
"""


def send(stack: Stack, correlation: str, version: str) -> None:
    body = {"subject": "deploy.finished", "correlation": correlation, "data": {"version": version}}
    response = api.post(f"{stack.base}/events", json=body)
    assert response.status_code == 202, response.text


async def test_wait_for_event_resumes_only_on_its_correlation(stack: Stack, bus: Bus) -> None:
    runbook_id = register(stack, EVENT)
    execution_id = execute(stack, runbook_id, {"change": "CHG-1"})
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.STEP_WAITING)
    send(stack, "CHG-2", "wrong")
    sent = rb(stack, "event", "deploy.finished", "--correlation", "CHG-1", "--data", '{"version": "v7"}')
    assert "sent event" in sent
    events = await wait_terminal(bus, execution_id)
    state = fold(events)
    assert state.status == "SUCCEEDED", stack.services.logs()
    received = [e for e in events if e.type == EventType.EVENT_RECEIVED]
    assert len(received) == 1 and received[0].data["correlation"] == "CHG-1"
    assert state.steps["after"].outputs == {"v": "v7"}

    # An event that came before its step waited is matched from the stream's recent past.
    send(stack, "CHG-early", "v8")
    early = execute(stack, runbook_id, {"change": "CHG-early"})
    events = await wait_terminal(bus, early)
    assert fold(events).steps["after"].outputs == {"v": "v8"}, stack.services.logs()


async def registered(bus: Bus, execution_id: str, timeout: float = 10.0) -> None:
    """Until the executor's registration of the execution's waiting step is in the stream."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await bus.js.get_last_msg(bus.names.outside_stream, bus.names.waiter_subject(execution_id))
            return
        except Exception:
            assert time.monotonic() < deadline, f"no waiter registration of {execution_id}"
            await asyncio.sleep(0.05)


async def test_a_waiting_step_gets_its_event_after_the_executor_restarted(stack: Stack, bus: Bus) -> None:
    execution_id = execute(stack, register(stack, EVENT), {"change": "CHG-restart"})
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.STEP_WAITING)
    # The registration follows step.waiting in its own write: killed between the two, a wait
    # is only ended by its timeout (docs/architecture.md, outside events). This test kills after.
    await registered(bus, execution_id)
    stack.services.kill(stack.processes["executor"])  # type: ignore[attr-defined]
    stack.services.start("executor")
    send(stack, "CHG-other", "no")
    send(stack, "CHG-restart", "v9")
    events = await wait_terminal(bus, execution_id)
    state = fold(events)
    assert state.status == "SUCCEEDED", stack.services.logs()
    assert state.steps["after"].outputs == {"v": "v9"}
    assert [e.data["correlation"] for e in events if e.type == EventType.EVENT_RECEIVED] == ["CHG-restart"]


LOOP = """\
parameters: {type: object, properties: {hosts: {type: array}}}
steps:
  - id: pick
    type: branch
    inputs:
      cases: [{when: "len(params.hosts) > 0", then: [loop]}]
      else: [nothing]
  - id: loop
    type: for_each
    depends_on: [pick]
    inputs:
      items: "${params.hosts}"
      concurrency: 2
      step: {type: shell, inputs: {command: [echo, "${item}-${index}"]}, outputs: {out: $.stdout}}
  - {id: nothing, type: transform, depends_on: [pick], inputs: {n: 0}}
  - {id: settled, type: wait, depends_on: [loop], inputs: {until: "steps.loop.outputs.count == 3", poll_interval: 1s, timeout: 10s}}
"""


async def test_branch_and_for_each_through_the_workers(stack: Stack, bus: Bus) -> None:
    execution_id = execute(stack, register(stack, LOOP), {"hosts": ["a", "b", "c"]})
    events = await wait_terminal(bus, execution_id)
    state = fold(events)
    assert state.status == "SUCCEEDED", stack.services.logs()
    assert state.steps["nothing"].status == "SKIPPED"
    assert state.steps["loop"].outputs["results"] == [{"out": "a-0\n"}, {"out": "b-1\n"}, {"out": "c-2\n"}]
    assert sorted(scheduled(events)) == ["loop[0]", "loop[1]", "loop[2]"]
    detail = await recorded_status(stack, execution_id, "SUCCEEDED")
    assert [s["id"] for s in detail["steps"]] == ["pick", "loop", "nothing", "settled"]
    replay = api.post(f"{stack.base}/executions/{execution_id}/replay")
    assert replay.status_code == 200 and replay.json()["verified"] is True, replay.text
