"""Readiness reflects a lost JetStream quorum, and the services come back by themselves (issue
19): a 3-node NATS cluster with RB_STREAM_REPLICAS=3, the API and an executor (with its health
endpoint) as processes. Two of the three nodes are killed: both say not ready, naming JetStream.
The nodes come back: both are ready again, the same processes, and an execution triggered then
runs to its end."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Database, NatsCluster, Stack, free_port, wait_until

from rb_common.bus import connect, read_execution
from rb_common.events import TERMINAL_EVENTS, EventType
from rb_common.loader import load_runbook_text
from rb_common.messages import TriggerRequest
from rb_common.registry_events import announce, ensure_bucket
from rb_engine.runner import RunRequest

pytestmark = pytest.mark.integration

RUNBOOK = "id: quorum\nname: Quorum\nsteps:\n  - {id: a, type: transform, inputs: {x: 1}}\n"


@pytest.fixture
def distributed(tmp_path: Path) -> Iterator[tuple[NatsCluster, Stack]]:
    cluster = NatsCluster(tmp_path / "nats")
    database = Database()
    home = tmp_path / "home"
    home.mkdir()
    stack = Stack(home, cluster, database.url, f"q{uuid.uuid4().hex[:8]}")
    try:
        cluster.start()
        yield cluster, stack
    finally:
        stack.stop()
        cluster.stop()
        database.drop()


def readiness(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.timeout(420)
async def test_readiness_names_a_lost_quorum_and_the_services_resume_by_themselves(
    distributed: tuple[NatsCluster, Stack],
) -> None:
    cluster, stack = distributed
    executor_health = f"127.0.0.1:{free_port()}"
    api = stack.start("api", "api", 0)
    executor = stack.start("executor", "executor", 0, RB_HEALTH_ADDR=executor_health)
    urls = {
        "api": f"http://127.0.0.1:{stack.api_port}/health/ready",
        "executor": f"http://{executor_health}/health/ready",
    }
    for name, url in urls.items():
        await asyncio.to_thread(wait_until, lambda u=url: readiness(u)[0] == 200, 120.0, f"{name} ready")
    status, body = readiness(urls["api"])
    assert body["checks"]["jetstream"] == "ok"

    # Two of three nodes gone: no meta leader, no stream leader. Both stay up and say why.
    for node in cluster.nodes[1:]:
        node.kill()
    for name, url in urls.items():
        await asyncio.to_thread(wait_until, lambda u=url: readiness(u)[0] == 503, 120.0, f"{name} not ready")
        status, body = readiness(url)
        assert status == 503 and body["checks"]["jetstream"] != "ok", body
        assert body["checks"]["nats"] == "ok", body  # the node it is connected to answers
        assert "jetstream" in body["detail"], body
    assert api.poll() is None and executor.poll() is None

    # The nodes come back: ready again, the same processes, and they work.
    for node in cluster.nodes[1:]:
        node.start()
    await asyncio.to_thread(cluster.wait_meta_leader, 120.0)
    for name, url in urls.items():
        try:
            await asyncio.to_thread(wait_until, lambda u=url: readiness(u)[0] == 200, 180.0, f"{name} ready again")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {readiness(url)}\n{stack.logs()}") from None
    assert api.poll() is None and executor.poll() is None
    assert stack.starts["executor"] == 1 and stack.starts["api"] == 1

    bus = await connect(cluster.nodes[2].url, namespace=stack.env["RB_NAMESPACE"], replicas=3, name="quorum")
    try:
        runbook, _ = load_runbook_text(RUNBOOK)
        await ensure_bucket(bus.js, bus.names)
        await announce(bus, runbook.id, "approved", revision=1, status="APPROVED", actor="tests")
        execution_id = uuid.uuid4().hex
        data = RunRequest(runbook=runbook, trigger={"revision": 1}).event_data()
        message = TriggerRequest(execution_id=execution_id, actor="tests", data=data)
        await bus.js.publish(
            bus.names.trigger_subject(runbook.id), message.encode(), headers={"Nats-Msg-Id": execution_id}, timeout=10
        )
        deadline = time.monotonic() + 120
        types: list[EventType] = []
        while time.monotonic() < deadline:
            types = [e.type for e, _ in await read_execution(bus, execution_id)]
            if any(t in TERMINAL_EVENTS for t in types):
                break
            await asyncio.sleep(0.5)
        assert EventType.EXECUTION_SUCCEEDED in types, f"{types}\n{stack.logs()}"
    finally:
        await bus.close()
