"""The execute route's 429 past the queue's bound (issue 15), with the API, executor and recorder
as OS processes on real NATS and PostgreSQL: nothing accepted is lost (every 202 ends in an
execution or a recorded refusal), and a queued execution is QUEUED in the API."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest
from services_support import Services, api, approve, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration

WAIT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gated(runbook_id: str, gates: Path) -> str:
    code = (
        "import os, sys, time\n"
        f"p = os.path.join({str(gates)!r}, sys.argv[1])\n"
        "while not os.path.exists(p): time.sleep(0.05)\n"
    )
    return (
        f"id: {runbook_id}\nname: Gated\nlegal_basis: tests\n"
        "parameters: {type: object, properties: {n: {type: string}}}\n"
        "steps:\n"
        f"  - {{id: hold, type: shell, timeout: 120s, retry: {{max_attempts: 1}},"
        f' inputs: {{command: [python3, -c, {code!r}, "${{params.n}}"]}}}}\n'
    )


async def wait_until_ready(port: int, services: Services) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if api.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("API not ready:\n" + services.logs())


async def test_past_the_bound_the_api_answers_429_and_every_202_ends_recorded(
    services: Services, bus: Bus, postgres_database: str, step_dir: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    services.env.update(
        RB_DATABASE_URL=postgres_database,
        RB_API_ADDR=f"127.0.0.1:{port}",
        RB_MAX_RUNNING_EXECUTIONS="1",
        RB_MAX_QUEUED_EXECUTIONS="3",
        RB_QUEUE_RETRY_AFTER="7",
    )
    for name in ("recorder", "executor", "api"):
        services.start(name)
    await wait_until_ready(port, services)
    created = api.post(
        f"{base}/runbooks", content=gated("bounded", step_dir), headers={"Content-Type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    assert approve(base, "bounded").status_code == 200

    accepted: list[str] = []
    refused = None
    for n in range(40):
        response = api.post(f"{base}/runbooks/bounded/execute", json={"params": {"n": str(n)}})
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 202, response.text
        execution_id = response.json()["execution_id"]
        accepted.append(execution_id)
        await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_REQUESTED, WAIT)
    assert refused is not None, "no 429 past the bound:\n" + services.logs()
    assert refused.headers["Retry-After"] == "7"
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.json()["status"] == 429 and "wait for a slot" in refused.json()["detail"]
    # One running and (up to) three waiting were taken. The API's figure errs high for the moment
    # an executor admits a trigger (it is in the table and not yet acknowledged: counted twice,
    # rb_api.backpressure), so the 429 may come one early, never late.
    assert len(accepted) >= 3

    # A waiting execution is QUEUED in the API (the recorder's projection).
    waiting = accepted[1]
    deadline = time.monotonic() + WAIT
    while api.get(f"{base}/executions/{waiting}").json().get("status") != "QUEUED":
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.2)

    for n in range(len(accepted)):
        (step_dir / str(n)).touch()
    outcomes = []
    for execution_id in accepted:
        state = fold(await wait_terminal(bus, execution_id, WAIT))
        outcomes.append(state.status.value)
        assert state.status in ("SUCCEEDED", "ABORTED"), services.logs()
        if state.status == "ABORTED":
            assert "queue is full" in (state.reason or "")
    assert outcomes.count("SUCCEEDED") >= 3, outcomes
