"""API test fixtures: the real app (create_app + its lifespan) on a SQLite file and the
in-memory twin of the bus (rb_common.memory_bus, held to the real one by
tests/integration/common/test_bus_contract.py), driven through httpx's ASGI transport. No server
is needed: these tests are hermetic. tests/integration/api runs the API against real NATS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_app_support import app_client, app_settings
from api_auth_support import ADMIN, TRIGGER_TOKEN
from api_probe_support import KeyFactory, SubjectProbe
from sqlalchemy import Engine

from rb_api.deps import ApiOptions
from rb_common.bus import DEFAULT_NAMES, Bus, append_event
from rb_common.events import Event
from rb_common.loader import load_runbook_text
from rb_common.memory_bus import memory_bus
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.db import make_engine


def runbook_yaml(runbook_id: str, *, extra: str = "", steps: str | None = None) -> str:
    """A small valid runbook: parameters with defaults, two transform steps."""
    steps = steps or (
        "  - id: first\n"
        "    type: transform\n"
        "    inputs: {size: '${params.batch_size}'}\n"
        "    outputs: {size: $.size}\n"
        "  - id: second\n"
        "    type: transform\n"
        "    depends_on: [first]\n"
        "    inputs: {doubled: '${steps.first.outputs.size * 2}'}\n"
    )
    return (
        f"id: {runbook_id}\n"
        "name: API test runbook\n"
        "version: 1.0.0\n"
        "owner: api-tests\n"
        "legal_basis: Tests of the rb API\n"
        "tags: [api-test, enrichment]\n"
        "parameters:\n"
        "  type: object\n"
        "  required: [region]\n"
        "  properties:\n"
        "    region: {type: string, enum: [eu, us]}\n"
        "    batch_size: {type: integer, default: 200, maximum: 10000}\n"
        f"{extra}"
        "steps:\n"
        f"{steps}"
    )


@pytest.fixture
def make_yaml() -> Callable[..., str]:
    return runbook_yaml


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = memory_bus()
    yield b
    await b.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    yield e
    e.dispose()


@pytest.fixture
def api_options() -> ApiOptions:
    return ApiOptions(max_body_bytes=64 * 1024, stream_wait_seconds=1.0, keepalive_seconds=0.3)


@pytest.fixture
async def client(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> AsyncIterator[httpx.AsyncClient]:
    settings = app_settings(tmp_path, alertmanager_token=TRIGGER_TOKEN)
    async with app_client(settings, engine, bus, api_options, headers=ADMIN) as c:
        yield c


@pytest.fixture
def make_key(client: httpx.AsyncClient) -> KeyFactory:
    """A new API key with these roles (and teams), created through the API by the admin."""

    async def make(name: str, *roles: str, teams: list[str] | None = None, **extra: Any) -> str:
        body: dict[str, Any] = {"name": name, "roles": list(roles), **extra}
        if teams is not None:
            body["teams"] = teams
        r = await client.post("/api/v1/keys", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    return make


@pytest.fixture
async def approver(make_key: KeyFactory) -> dict[str, str]:
    """Headers of a second admin: four eyes keeps the default admin, who authored the test's
    runbooks, from approving them."""
    return {"Authorization": f"Bearer {await make_key('second-admin', 'admin')}"}


@pytest.fixture
async def runbook_id(bus: Bus) -> AsyncIterator[str]:
    """A unique runbook id; its trigger subject is purged afterwards."""
    rid = f"t-api-{uuid.uuid4().hex[:12]}"
    yield rid
    await bus.js.purge_stream(DEFAULT_NAMES.triggers_stream, subject=DEFAULT_NAMES.trigger_subject(rid))


@pytest.fixture
async def probe(bus: Bus) -> AsyncIterator[SubjectProbe]:
    p = SubjectProbe(bus)
    yield p
    await p.cleanup()


class Executions:
    """Real executions: run in-process by the executor's Runner (fake clock, pure transform
    steps), then written to the execution's JetStream subject exactly as the executor does."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ids: list[str] = []

    async def run(self, runbook_id: str | None = None, params: dict[str, Any] | None = None) -> list[Event]:
        rid = runbook_id or f"t-api-run-{uuid.uuid4().hex[:8]}"
        runbook = load_runbook_text(runbook_yaml(rid))[0]
        store = InMemoryEventStore()
        runner = Runner(
            store,
            PluginExecutor(default_registry()),
            FakeClock(datetime(2025, 11, 29, tzinfo=UTC)),
            Settings(),
        )
        execution_id = uuid.uuid4().hex
        self.ids.append(execution_id)
        await runner.run(
            RunRequest(
                runbook=runbook,
                params=params or {"region": "eu", "batch_size": 21},
                trigger={"type": "api", "actor": "tester"},
                actor="tester",
                execution_id=execution_id,
            )
        )
        return store.read(execution_id)

    async def publish(self, events: list[Event]) -> None:
        for event in events:
            await append_event(self.bus, event, await self._last_seq(event.execution_id))

    async def _last_seq(self, execution_id: str) -> int:
        """Stream sequence of the subject's last message (0 for none), as the executor checks it."""
        from nats.js.errors import NotFoundError

        try:
            last = await self.bus.js.get_last_msg(
                DEFAULT_NAMES.events_stream, DEFAULT_NAMES.exec_subject(execution_id)
            )
        except NotFoundError:
            return 0
        return last.seq or 0

    async def cleanup(self) -> None:
        for execution_id in self.ids:
            await self.bus.js.purge_stream(
                DEFAULT_NAMES.events_stream, subject=DEFAULT_NAMES.exec_subject(execution_id)
            )


@pytest.fixture
async def executions(bus: Bus) -> AsyncIterator[Executions]:
    e = Executions(bus)
    yield e
    await e.cleanup()
