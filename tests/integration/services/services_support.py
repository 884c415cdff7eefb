"""Services as real OS processes against the session's NATS (and PostgreSQL), for e2e tests:
the helpers the tests import by name, and the fixtures conftest.py makes available."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from rb_common.bus import Bus, connect, read_execution
from rb_common.events import TERMINAL_EVENTS, Event
from rb_common.loader import load_runbook_text
from rb_common.messages import TriggerRequest
from rb_common.model import Runbook
from rb_common.registry_events import announce, ensure_bucket
from rb_engine.runner import RunRequest

# The admin key the stacks of these tests seed (RB_BOOTSTRAP_ADMIN_KEY) and the CLI sends
# (RB_API_KEY); `api` is an HTTP client that sends it.
ADMIN_KEY = "rbk_services-tests-admin-key-0123456789abcdefghijkl"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
api = httpx.Client(headers=ADMIN, timeout=10)
NATS_URL = os.environ["RB_TEST_NATS_URL"]  # the session's private nats-server (tests/conftest.py)
PG_ADMIN = os.environ.get("RB_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class Services:
    """Starts `rb serve SERVICE` processes; stops every one of them at the end of the test."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []
        self.cwd: Path | None = None  # the services' working directory (default: the tests')

    def start(self, service: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.home / f"{service}-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "rb_cli", "serve", service],
            env={**self.env, **extra_env},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.home.glob("*.log")
        )

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def services(tmp_path: Path, namespace: str) -> Iterator[Services]:
    consumer = f"recorder-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RB_HOME": str(tmp_path),
        "RB_NATS_URL": NATS_URL,
        "RB_NAMESPACE": namespace,
        "RB_TASK_ACK_WAIT": "3",
        "RB_LOG_LEVEL": "INFO",
        "RB_RECORDER_CONSUMER": consumer,
        "RB_RECORDER_DELIVER": "new",
        "RB_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "RB_API_KEY": ADMIN_KEY,
        # The trigger sources that cannot sign take a bearer token; these stacks use the admin
        # key's value for it, so `api` (which sends that key) authenticates as the sender too.
        "RB_ALERTMANAGER_TOKEN": ADMIN_KEY,
        "RB_GRAFANA_TOKEN": ADMIN_KEY,
        "RB_CLOUDEVENTS_TOKEN": ADMIN_KEY,
    }
    env.pop("RB_DATABASE_URL", None)
    manager = Services(tmp_path, env)
    yield manager
    manager.stop_all()
    asyncio.run(_delete_streams(namespace))


async def _delete_streams(namespace: str) -> None:
    """The test's namespace goes away whole: its streams, and with them every consumer."""
    connection = await connect(NATS_URL, namespace=namespace, name="rb-tests-cleanup")
    try:
        names = [config.name or "" for config in connection.names.streams()]
        for name in [*names, *connection.names.kv_streams()]:
            with contextlib.suppress(Exception):  # already gone, or never made
                await connection.js.delete_stream(name)
    finally:
        await connection.close()


@pytest.fixture
async def bus(namespace: str) -> AsyncIterator[Bus]:
    connection = await connect(NATS_URL, namespace=namespace, name="rb-tests")
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"rb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_APPROVERS: dict[str, dict[str, str]] = {}


def approver_headers(base: str) -> dict[str, str]:
    """A second admin of the stack at `base` (…/api/v1): four eyes keeps the bootstrap admin,
    who authored the tests' runbooks, from approving them."""
    if base not in _APPROVERS:
        made = api.post(f"{base}/keys", json={"name": "second-admin", "roles": ["admin"]})
        assert made.status_code == 201, made.text
        _APPROVERS[base] = {"Authorization": f"Bearer {made.json()['key']}"}
    return _APPROVERS[base]


def approve(base: str, runbook_id: str) -> httpx.Response:
    """Approve the runbook's current revision as the second admin."""
    return api.post(f"{base}/runbooks/{runbook_id}/approve", headers=approver_headers(base))


async def approve_in_registry(bus: Bus, runbook_id: str, revision: int = 1, status: str = "APPROVED") -> None:
    """What the API puts in the registry bucket when it approves a revision: the executor
    starts a run only for the revision the bucket says is APPROVED (rb_executor admission)."""
    await ensure_bucket(bus.js, bus.names)
    await announce(bus, runbook_id, "approved", revision=revision, status=status, actor="tests")


async def publish_trigger(bus: Bus, yaml_text: str | Runbook, *, approve: bool = True, **request: Any) -> str:
    """A trigger straight onto the bus for revision 1, approved in the registry bucket first
    (unless `approve=False`). A Runbook instead of its text skips the YAML parser (thousands of
    steps take the pure-Python parser minutes on a loaded machine)."""
    runbook = yaml_text if isinstance(yaml_text, Runbook) else load_runbook_text(yaml_text)[0]
    execution_id = uuid.uuid4().hex
    if approve:
        await approve_in_registry(bus, runbook.id)
    request["trigger"] = {"revision": 1, **request.get("trigger", {})}
    data = RunRequest(runbook=runbook, **request).event_data()
    message = TriggerRequest(execution_id=execution_id, actor="tests", data=data)
    await bus.js.publish(
        bus.names.trigger_subject(runbook.id),
        message.encode(),
        headers={"Nats-Msg-Id": execution_id},
        stream=bus.names.triggers_stream,
    )
    return execution_id


async def wait_for_event(bus: Bus, execution_id: str, predicate: Any, timeout: float = 30.0) -> Event:
    """The first event of the execution matching `predicate` (from the start of its stream)."""
    sub = await bus.js.subscribe(bus.names.exec_subject(execution_id), ordered_consumer=True)
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = await sub.next_msg(timeout=timeout)
                event = Event.from_json(msg.data)
                if predicate(event):
                    return event
    finally:
        await sub.unsubscribe()


async def wait_terminal(bus: Bus, execution_id: str, timeout: float = 30.0) -> list[Event]:
    await wait_for_event(bus, execution_id, lambda e: e.type in TERMINAL_EVENTS, timeout)
    return [event for event, _ in await read_execution(bus, execution_id)]
