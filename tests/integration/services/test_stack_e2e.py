"""The stack as separate OS processes (API, executor, recorder) on real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from services_support import Services, api, approve, wait_terminal
from sqlalchemy import create_engine, text

from rb_common.bus import Bus
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runbook_yaml(runbook_id: str) -> str:
    return f"""
id: {runbook_id}
name: E2E
version: 1.2.0
legal_basis: "tests"
parameters:
  type: object
  properties: {{n: {{type: integer, default: 2, maximum: 100}}}}
steps:
  - {{id: a, type: transform, inputs: {{n: "${{params.n}}"}}, outputs: {{n: $.n}}}}
  - {{id: b, type: shell, depends_on: [a], inputs: {{command: [echo, "n=${{steps.a.outputs.n}}"]}}, outputs: {{out: $.stdout}}}}
  - {{id: c, type: wait, depends_on: [a], inputs: {{seconds: 0.2}}}}
  - {{id: d, type: transform, depends_on: [b, c], inputs: {{out: "${{steps.b.outputs.out}}"}}, outputs: {{out: $.out}}}}
"""


class Stack:
    def __init__(self, services: Services, database_url: str) -> None:
        self.services = services
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        services.env["RB_DATABASE_URL"] = database_url
        services.env["RB_API_ADDR"] = f"127.0.0.1:{self.port}"
        self.engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))

    def start(self, *names: str) -> dict[str, Any]:
        return {name: self.services.start(name) for name in names}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if api.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("API not ready:\n" + self.services.logs())

    def register(self, runbook_id: str) -> None:
        response = api.post(
            f"{self.base}/runbooks",
            content=runbook_yaml(runbook_id),
            headers={"Content-Type": "application/yaml"},
        )
        assert response.status_code == 201, response.text
        assert approve(self.base, runbook_id).status_code == 200

    def execute(self, runbook_id: str, **kwargs: Any) -> httpx.Response:
        return api.post(f"{self.base}/runbooks/{runbook_id}/execute", **kwargs)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    async def wait_recorded(self, execution_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = api.get(f"{self.base}/executions/{execution_id}")
            if response.status_code == 200 and response.json()["status"] in {"SUCCEEDED", "FAILED"}:
                rows = self.rows("SELECT status FROM runbook_executions WHERE id = :id", id=execution_id)
                if rows and rows[0].status == response.json()["status"]:
                    return response.json()
            await asyncio.sleep(0.2)
        raise AssertionError(f"{execution_id} not recorded:\n" + self.services.logs())


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    return Stack(services, postgres_database)


async def test_execution_through_the_api_is_recorded_event_for_event(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    runbook_id = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.register(runbook_id)
    response = stack.execute(runbook_id, json={"params": {"n": 7}})
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    events = await wait_terminal(bus, execution_id)
    detail = await stack.wait_recorded(execution_id)
    state = fold(events)
    assert state.status == "SUCCEEDED" == detail["status"]
    assert detail["runbook_id"] == runbook_id and detail["runbook_version"] == "1.2.0"
    assert [s["id"] for s in detail["steps"]] == ["a", "b", "c", "d"]
    assert {s["id"]: s["status"] for s in detail["steps"]} == {
        sid: s.status for sid, s in state.steps.items()
    }
    assert detail["steps"][3]["outputs"] == {"out": "n=7\n"}
    stored = stack.rows("SELECT seq, id FROM events WHERE execution_id = :id ORDER BY seq", id=execution_id)
    assert [(r.seq, r.id) for r in stored] == [(e.seq, e.id) for e in events]
    logs = stack.rows(
        "SELECT step_id, status, attempts FROM runbook_step_logs WHERE execution_id = :id", id=execution_id
    )
    assert {r.step_id: (r.status, r.attempts) for r in logs} == {
        sid: (s.status, s.attempt) for sid, s in state.steps.items()
    }
    api_events = api.get(f"{stack.base}/executions/{execution_id}/events").json()["items"]
    assert [e["id"] for e in api_events] == [e.id for e in events]


async def test_the_same_idempotency_key_gives_one_execution(stack: Stack, bus: Bus) -> None:
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    runbook_id = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.register(runbook_id)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = stack.execute(runbook_id, json={}, headers=key)
    second = stack.execute(runbook_id, json={}, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["execution_id"] == second.json()["execution_id"]
    await stack.wait_recorded(first.json()["execution_id"])
    await asyncio.sleep(1)  # let a second execution, if one were wrongly started, reach the recorder
    rows = stack.rows("SELECT id FROM runbook_executions WHERE runbook_id = :r", r=runbook_id)
    assert len(rows) == 1


async def test_the_recorder_catches_up_after_being_killed(stack: Stack, bus: Bus) -> None:
    procs = stack.start("recorder", "executor", "api")
    stack.wait_ready()
    runbook_id = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.register(runbook_id)
    stack.services.kill(procs["recorder"])
    ids = [stack.execute(runbook_id, json={"params": {"n": i}}).json()["execution_id"] for i in range(5)]
    streams = {i: await wait_terminal(bus, i) for i in ids}
    assert not stack.rows("SELECT id FROM runbook_executions WHERE runbook_id = :r", r=runbook_id)
    stack.start("recorder")
    for execution_id in ids:
        detail = await stack.wait_recorded(execution_id)
        assert detail["status"] == "SUCCEEDED"
        stored = stack.rows("SELECT id FROM events WHERE execution_id = :id ORDER BY seq", id=execution_id)
        assert [r.id for r in stored] == [e.id for e in streams[execution_id]]


def test_replay_reads_an_execution_recorded_by_the_services(stack: Stack, tmp_path: Path) -> None:
    import subprocess
    import sys

    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    runbook_id = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.register(runbook_id)
    execution_id = stack.execute(runbook_id, json={}).json()["execution_id"]
    asyncio.run(stack.wait_recorded(execution_id))
    env = {**stack.services.env, "RB_HOME": str(tmp_path / "empty-home")}
    for source in ("nats", "db"):
        result = subprocess.run(
            [sys.executable, "-m", "rb_cli", "replay", execution_id, "--source", source],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "REPLAY VERIFIED" in result.stdout
    audit = subprocess.run(
        [sys.executable, "-m", "rb_cli", "audit", "verify", execution_id, "--source", "db"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert audit.returncode == 0 and "AUDIT OK" in audit.stdout


RB001 = Path(__file__).resolve().parents[3] / "runbooks" / "rb-001-entity-enrichment"


def test_rb_001_runs_through_the_api_from_another_directory_and_replays_verified(
    stack: Stack, tmp_path: Path, http_server: Any
) -> None:
    """The schema travels with the registered revision and the execution: neither the services
    nor the replay run where runbooks/ is, and nothing reads it from their disk."""
    import subprocess
    import sys

    from rb_common.snapshot import registration_body

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stack.services.cwd = elsewhere
    stack.services.env["RB_SECRET_API_TOKEN"] = "tok-e2e-5150"
    http_server.ok(
        "/entities",
        {
            "data": {
                "entities": [
                    {"id": "E1", "name": "Acme Corp", "kind": "organization"},
                    {"id": "X2", "name": "", "kind": "planet"},
                ]
            }
        },
    )
    http_server.ok("/enrich", {"enriched": [{"id": "E1", "name": "Acme Corp", "kind": "organization"}]})
    stack.start("recorder", "executor", "api")
    stack.wait_ready()
    body, content_type = registration_body(RB001 / "runbook.yaml")
    created = api.post(f"{stack.base}/runbooks", content=body, headers={"Content-Type": content_type})
    assert created.status_code == 201, created.text
    runbook_id = created.json()["id"]
    assert approve(stack.base, runbook_id).status_code == 200
    params = {"source_url": http_server.url_for("/entities"), "enrich_url": http_server.url_for("/enrich")}
    response = stack.execute(
        runbook_id, json={"params": params, "assumptions": {"source_data_validated": True}}
    )
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    detail = asyncio.run(stack.wait_recorded(execution_id))
    assert detail["status"] == "SUCCEEDED", stack.services.logs()
    steps = {s["id"]: s for s in detail["steps"]}
    assert steps["validate"]["status"] == "SUCCEEDED"
    assert [e["id"] for e in steps["validate"]["outputs"]["valid_entities"]] == ["E1"]
    [first] = stack.rows("SELECT event FROM events WHERE execution_id = :id AND seq = 1", id=execution_id)
    event = first.event if isinstance(first.event, dict) else json.loads(first.event)
    files = event["data"]["files"]
    assert files == {"schemas/entity-v2.json": (RB001 / "schemas/entity-v2.json").read_text()}
    env = {**stack.services.env, "RB_HOME": str(tmp_path / "empty-home")}
    for source in ("nats", "db"):
        result = subprocess.run(
            [sys.executable, "-m", "rb_cli", "replay", execution_id, "--source", source],
            capture_output=True,
            text=True,
            env=env,
            cwd=elsewhere,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "REPLAY VERIFIED" in result.stdout
