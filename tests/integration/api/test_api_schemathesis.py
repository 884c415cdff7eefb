"""Schemathesis against the running API (issue 12): every operation of the live /openapi.json,
about 20 examples each, over HTTP to `rb serve api` as its own process (a fresh PostgreSQL
database, the session's NATS in a namespace of the test's own), with an admin key of its own.

The checks: no 5xx, every status and Content-Type declared, every answer (problems included)
valid against its declared schema, declared headers present; credentials enforced, deleted
resources gone. Seeded with a runbook, a finished
and a running execution, so that the path parameters reach the routes' logic rather than 404s;
the trigger sources that take a bearer token take the fuzzer's key, so their parsers are fuzzed
too (the signed ones answer 401: a fuzzer cannot sign). Deterministic generation (reproducible
in CI); at most 5 minutes (a wall-clock guard on the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rb_common.bus import append_events, connect
from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.secrets import generate_key
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.db import database_url, make_engine, migrate
from rb_store.keys import seed_key
from rb_store.recorder import Recorder

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]
BOOTSTRAP_KEY = "rbk_schemathesis-bootstrap-key-0123456789abcdefghij"
# The fuzzer's own admin key, seeded before the API starts: the sources that cannot sign take
# it as their bearer token too, so their parsers are fuzzed rather than refused.
FUZZER_KEY = "rbk_schemathesis-fuzzer-key-0123456789abcdefghijklm"
MAX_EXAMPLES = 20
BUDGET_SECONDS = 300  # the whole schemathesis run; the process is killed past it
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        # Credentials are enforced (no answer without them or with wrong ones), required
        # headers are required, and what DELETE removed is gone (404 afterwards) while what
        # POST created is there.
        "ignored_auth",
        "missing_required_header",
        "unsupported_method",  # 405 with an Allow header naming every method of the path
        "allow_header_conformance",
        "use_after_free",
        "ensure_resource_availability",
    ]
)
RUNBOOK_ID = "fuzz-seed"
DOOMED_ID = "fuzz-doomed"  # what DELETE /api/v1/runbooks/{id} deletes, so that the seed stays
RUNBOOK = f"""\
id: {RUNBOOK_ID}
name: Schemathesis seed
version: 1.0.0
owner: api-tests
legal_basis: Contract tests of the rb API
tags: [fuzz]
parameters:
  type: object
  properties:
    size: {{type: integer, default: 3}}
triggers:
  - cron: "0 3 * * *"
  - alert: {{source: alertmanager, match: {{alertname: FuzzSeed}}}}
steps:
  - id: first
    type: transform
    inputs: {{size: '${{params.size}}'}}
    outputs: {{size: $.size}}
  - id: second
    type: transform
    depends_on: [first]
    inputs: {{doubled: '${{steps.first.outputs.size * 2}}'}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningApi:
    url: str
    key: str  # the fuzzer's admin key (not the bootstrap key, which registers the seed runbook)
    key_id: str
    log: Path
    process: subprocess.Popen[bytes]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rb serve api exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the API was not ready within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def running_api(tmp_path: Path, scratch_pg_url: str, namespace: str) -> Iterator[RunningApi]:
    """`rb serve api` as its own process; stopped (and its namespace's streams deleted) after."""
    engine = make_engine(database_url(Settings(database_url=scratch_pg_url)))
    try:
        migrate(engine)
        fuzzer, _ = seed_key(engine, FUZZER_KEY, name="schemathesis", roles=["admin"], created_by="test")
    finally:
        engine.dispose()
    port = _free_port()
    env = {
        **os.environ,
        "RB_HOME": str(tmp_path / "home"),
        "RB_DATABASE_URL": scratch_pg_url,
        "RB_NATS_URL": NATS_URL,
        "RB_NAMESPACE": namespace,
        "RB_API_ADDR": f"127.0.0.1:{port}",
        "RB_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_KEY,
        "RB_MASTER_KEY": generate_key(),  # the secret store (and the pages' links) work
        "RB_ALERTMANAGER_TOKEN": FUZZER_KEY,
        "RB_GRAFANA_TOKEN": FUZZER_KEY,
        "RB_CLOUDEVENTS_TOKEN": FUZZER_KEY,
        "RB_WEBHOOK_SECRET": uuid.uuid4().hex,
        "RB_PAGERDUTY_WEBHOOK_SECRET": uuid.uuid4().hex,
        "RB_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "api.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rb_cli", "serve", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield RunningApi(url, FUZZER_KEY, fuzzer.id, log, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        asyncio.run(_delete_streams(namespace))


async def _delete_streams(namespace: str) -> None:
    bus = await connect(NATS_URL, namespace=namespace, name="rb-schemathesis-cleanup")
    try:
        for config in bus.names.streams():
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(config.name or "")
        for stream in bus.names.kv_streams():
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(stream)
    finally:
        await bus.close()


@dataclass
class Seeded:
    finished: str  # a finished execution of RUNBOOK_ID
    running: str  # one still RUNNING (control commands are accepted)


async def _seed_executions(database: str, namespace: str) -> Seeded:
    """Two executions of the seed runbook, run in-process and written where the executor and
    the recorder would write them: the execution's NATS subject and the projection tables."""
    runbook = load_runbook_text(RUNBOOK)[0]
    store = InMemoryEventStore()
    runner = Runner(
        store, PluginExecutor(default_registry()), FakeClock(datetime(2026, 1, 5, tzinfo=UTC)), Settings()
    )
    seeded = Seeded(finished=f"fuzz-done-{uuid.uuid4().hex[:8]}", running=f"fuzz-run-{uuid.uuid4().hex[:8]}")
    for execution_id in (seeded.finished, seeded.running):
        await runner.run(
            RunRequest(
                runbook=runbook, trigger={"type": "api"}, actor="key:schemathesis", execution_id=execution_id
            )
        )
    finished = store.read(seeded.finished)
    running = store.read(seeded.running)
    started = next(i for i, e in enumerate(running) if e.type == EventType.EXECUTION_STARTED)
    running = running[: started + 1]
    engine = make_engine(database_url(Settings(database_url=database)))
    bus = await connect(NATS_URL, namespace=namespace, name="rb-schemathesis-seed")
    try:
        recorder = Recorder(engine)
        for events in (finished, running):
            await append_events(bus, events, 0)
            for event in events:
                recorder.apply(event)
    finally:
        await bus.close()
        engine.dispose()
    return seeded


def _config(path: Path, seeded: Seeded) -> Path:
    """Path parameters take the seeded ids half of the time (generated values otherwise), but
    DELETE only ever deletes the doomed runbook (the seed stays for the other operations); the
    SSE stream and the detail (whose `?wait=` long poll holds a running execution's answer up to
    30 s) only ever the finished execution's (the stream ends after the terminal event; a running
    execution's stream stays open, and an unknown one waits for a first event)."""
    path.write_text(
        f"""\
[dictionaries.runbooks]
values = ["{RUNBOOK_ID}"]

[dictionaries.indexes]
values = [0, 1]

[dictionaries.executions]
values = ["{seeded.finished}", "{seeded.running}"]

[parameters]
"path.runbook_id" = {{ dictionary = "runbooks", probability = 0.5 }}
"path.execution_id" = {{ dictionary = "executions", probability = 0.5 }}
"path.index" = {{ dictionary = "indexes", probability = 0.5 }}

[[operations]]
include-path = "/api/v1/runbooks/{{runbook_id}}"
include-method = "DELETE"
parameters = {{ runbook_id = "{DOOMED_ID}" }}

[[operations]]
include-path = "/api/v1/executions/{{execution_id}}/stream"
parameters = {{ execution_id = "{seeded.finished}" }}

[[operations]]
include-path = "/api/v1/executions/{{execution_id}}"
include-method = "GET"
parameters = {{ execution_id = "{seeded.finished}" }}
"""
    )
    return path


def _schemathesis() -> str:
    found = Path(sys.executable).parent / "st"
    if not found.exists():
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]' (scripts/bootstrap.sh does)")
    return str(found)


@pytest.mark.timeout(BUDGET_SECONDS + 120)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    running_api: RunningApi, scratch_pg_url: str, namespace: str, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {running_api.key}"}
    async with httpx.AsyncClient(base_url=running_api.url, headers=admin, timeout=10) as client:
        # Another admin registers the runbook: the fuzzer's key may approve it (four eyes).
        for text in (RUNBOOK, RUNBOOK.replace(f"id: {RUNBOOK_ID}", f"id: {DOOMED_ID}", 1)):
            created = await client.post(
                "/api/v1/runbooks",
                content=text,
                headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}", "Content-Type": "application/yaml"},
            )
            assert created.status_code == 201, created.text
        approved = await client.post(f"/api/v1/runbooks/{RUNBOOK_ID}/approve")
        assert approved.status_code == 200, approved.text
        # The fuzzer's key cannot revoke itself: deleting it is a conflict, and it still works.
        refused = await client.delete(f"/api/v1/keys/{running_api.key_id}")
        assert refused.status_code == 409, refused.text
        assert (await client.get("/api/v1/keys")).status_code == 200
    seeded = await _seed_executions(scratch_pg_url, namespace)
    config = _config(tmp_path / "schemathesis.toml", seeded)
    command = [
        _schemathesis(),
        "--config-file",
        str(config),
        "run",
        f"{running_api.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {running_api.key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--request-timeout",
        "20",
        # One worker: the operations run in one order, so the run is the same every time (with
        # more, which operation changes the shared state first varies).
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), BUDGET_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"schemathesis ran over its {BUDGET_SECONDS} s budget")
    elapsed = time.monotonic() - started
    output = out.decode(errors="replace")
    print(output[-6000:])  # the summary, for the CI log (pytest -s / -rP)
    assert proc.returncode == 0, (
        f"schemathesis failed (exit {proc.returncode}, {elapsed:.0f} s):\n{output[-12000:]}\n"
        f"--- API log\n{running_api.log.read_text(errors='replace')[-4000:]}"
    )
    assert "Tested:" in output, output[-3000:]
    # The fuzzer's key survived the run (a key cannot revoke itself).
    check = httpx.get(f"{running_api.url}/api/v1/keys", headers=admin, timeout=10)
    assert check.status_code == 200, check.text
