"""`GET /executions/{id}?wait=S` (rb_api.long_poll) on the stack as OS processes: one request
follows an execution to its end; a short wait answers with the running execution; an unknown
execution is a 404 at once; a wait past the bound is a 422."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from services_support import Services, api, approve
from test_stack_e2e import Stack

pytestmark = pytest.mark.integration

RUNBOOK = """
id: {id}
name: Long poll
legal_basis: "tests"
steps:
  - {{id: pause, type: wait, inputs: {{seconds: 3}}}}
  - {{id: done, type: transform, depends_on: [pause], inputs: {{ok: true}}, outputs: {{ok: $.ok}}}}
"""


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    return Stack(services, postgres_database)


def get(stack: Stack, execution_id: str, wait: float | None = None) -> tuple[int, dict[str, Any], float]:
    began = time.monotonic()
    params = {} if wait is None else {"wait": wait}
    response = api.get(f"{stack.base}/executions/{execution_id}", params=params, timeout=60)
    return response.status_code, response.json(), time.monotonic() - began


def register_and_execute(stack: Stack) -> str:
    """A new approved runbook, executed once: the execution id of the 202."""
    runbook_id = f"lp-{uuid.uuid4().hex[:8]}"
    created = api.post(
        f"{stack.base}/runbooks",
        content=RUNBOOK.format(id=runbook_id),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 201, created.text
    assert approve(stack.base, runbook_id).status_code == 200
    response = stack.execute(runbook_id, json={})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def test_one_request_follows_an_execution_to_its_end(stack: Stack) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    execution_id = register_and_execute(stack)

    # Known (to the projection or the stream) and running.
    deadline = time.monotonic() + 30
    code, body, _ = get(stack, execution_id)
    while (code, body.get("status")) != (200, "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.05)  # a plain poll, as a client without ?wait does
        code, body, _ = get(stack, execution_id)
    assert (code, body.get("status")) == (200, "RUNNING"), (code, body, stack.services.logs())

    # A short wait ends with the execution still running: the same detail, after the wait.
    code, body, took = get(stack, execution_id, wait=0.5)
    assert (code, body["status"]) == (200, "RUNNING")
    assert 0.5 <= took < 2.5, took

    # A long one answers when it ends, long before the wait is up, with the recorded end: woken
    # by the recorder's announcement, not by a periodic re-read (every 2 s).
    code, body, took = get(stack, execution_id, wait=25)
    answered = datetime.now(UTC)
    assert (code, body["status"]) == (200, "SUCCEEDED"), (code, body)
    assert took < 10, took
    late = (answered - datetime.fromisoformat(body["completed_at"])).total_seconds()
    assert late < 0.75, late
    assert {s["id"]: s["status"] for s in body["steps"]} == {"pause": "SUCCEEDED", "done": "SUCCEEDED"}

    # Finished: at once.
    code, body, took = get(stack, execution_id, wait=25)
    assert (code, body["status"]) == (200, "SUCCEEDED") and took < 1.0, took

    # Nothing to wait for: 404 at once; a wait past the bound: 422.
    code, _, took = get(stack, uuid.uuid4().hex, wait=10)
    assert code == 404 and took < 2.0, took
    code, problem, _ = get(stack, execution_id, wait=31)
    assert code == 422, problem


def test_a_long_poll_right_after_the_202_waits_for_the_execution_to_appear(stack: Stack) -> None:
    """Before an executor takes its trigger, an accepted execution has no event and no row: a
    long poll through the API process that accepted it waits for it instead of answering 404."""
    stack.start("recorder", "api")  # no executor yet: the trigger waits on its stream
    stack.wait_ready()
    execution_id = register_and_execute(stack)
    assert get(stack, execution_id)[0] == 404  # a plain read: known nowhere yet

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(get, stack, execution_id, 25)
        # Still waiting half a second later (an answer at once would have come by then).
        done, _ = concurrent.futures.wait([waiting], timeout=0.5)
        assert not done, waiting.result()
        stack.start("executor")
        code, body, took = waiting.result(timeout=60)
    assert (code, body["status"]) == (200, "SUCCEEDED"), (code, body, stack.services.logs())
    assert took < 25, took


def test_with_the_recorder_down_a_long_poll_answers_from_the_stream(stack: Stack) -> None:
    """No recorder, so no projection and no announcement: the request's periodic re-read finds
    the end on the stream and answers with the stream's fold of the execution."""
    stack.start("executor", "api")
    stack.wait_ready()
    execution_id = register_and_execute(stack)
    code, body, took = get(stack, execution_id, wait=25)
    assert (code, body["status"]) == (200, "SUCCEEDED"), (code, body, stack.services.logs())
    assert took < 10, took
    assert {s["id"]: s["status"] for s in body["steps"]} == {"pause": "SUCCEEDED", "done": "SUCCEEDED"}
