"""Execution id prefixes are resolved in every place executions are recorded (the local logs,
the recorder's database, JetStream): a prefix naming one execution anywhere is that execution,
one naming several is refused with the candidates listed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rb_common.bus import append_events, connect
from rb_common.events import Event
from rb_engine.eventlog import FileEventStore
from rb_store.db import make_engine, migrate
from rb_store.store import SqlEventStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "runbooks" / "rb-000-hello"


def rb(*args: str, home: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_") or k == "RB_TEST_NATS_URL"}
    env.update(
        {"RB_HOME": str(home), "RB_RUNBOOKS_DIR": str(REPO / "runbooks"), "NO_COLOR": "1", **(extra or {})}
    )
    env.setdefault("RB_NATS_URL", "nats://127.0.0.1:1")  # no JetStream unless a test gives one
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def recorded_run(home: Path) -> list[Event]:
    run = rb("run", "rb-000-hello", "--fixture", str(PACK / "fixtures/ok.yaml"), home=home)
    assert run.returncode == 0, run.stdout + run.stderr
    execution_id = re.search(r"execution id: ([0-9a-f]{32})", run.stdout).group(1)  # type: ignore[union-attr]
    return FileEventStore(home / "executions").read(execution_id)


def renamed(events: list[Event], execution_id: str) -> list[Event]:
    """The same run recorded under another id (everywhere the id occurs: idempotency keys ...)."""
    old = events[0].execution_id
    return [
        Event.from_json(e.to_json().replace(old, execution_id)).model_copy(update={"id": uuid.uuid4().hex})
        for e in events
    ]


def into_database(home: Path, events: list[Event]) -> None:
    engine = make_engine(f"sqlite:///{home / 'rb.db'}")
    try:
        migrate(engine)
        store = SqlEventStore(engine)
        for event in events:
            store.append(event)
    finally:
        engine.dispose()


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_prefix_of_two_local_executions_is_refused_listing_both(tmp_path: Path) -> None:
    events = recorded_run(tmp_path)
    first = events[0].execution_id
    twin = first[:8] + "0" * 24 if first[8] != "0" else first[:8] + "1" * 24
    log = tmp_path / "executions"
    (log / f"{twin}.jsonl").write_text(
        "".join(e.to_json() + "\n" for e in renamed(events, twin)), encoding="utf-8"
    )
    line = one_error(rb("replay", first[:8], home=tmp_path))
    assert f"'{first[:8]}' is ambiguous" in line and first in line and twin in line
    for command in (["audit", "verify", first[:8]], ["fixture", "export", first[:8], "--out", str(tmp_path)]):
        assert twin in one_error(rb(*command, home=tmp_path))
    longer = first[:9] if twin[8] != first[8] else first
    replay = rb("replay", longer, home=tmp_path)
    assert replay.returncode == 0 and f"replaying execution {first}" in replay.stdout, replay.stdout


def test_prefix_is_resolved_in_the_recorder_database_and_across_sources(tmp_path: Path) -> None:
    events = recorded_run(tmp_path)
    local = events[0].execution_id
    only_in_db = "ab" * 16 if not local.startswith("ab") else "cd" * 16
    into_database(tmp_path, renamed(events, only_in_db))
    replay = rb("replay", only_in_db[:6], home=tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replaying execution {only_in_db}" in replay.stdout and "recorder database" in replay.stdout

    # The same prefix in the local log and the database: both named, nothing replayed.
    shared = local[:10] + "f" * 22 if local[10] != "f" else local[:10] + "e" * 22
    into_database(tmp_path, renamed(events, shared))
    line = one_error(rb("replay", local[:10], home=tmp_path))
    assert local in line and shared in line and "2 executions" in line
    assert "no recorded execution 'ffff'" in one_error(
        rb("replay", "ffff", "--source", "local", home=tmp_path)
    )


def test_prefix_is_resolved_in_jetstream(tmp_path: Path, namespace: str) -> None:
    events = recorded_run(tmp_path)
    in_nats = "9e" * 16
    nats_url = os.environ["RB_TEST_NATS_URL"]

    async def publish() -> None:
        bus = await connect(nats_url, namespace=namespace, name="test-prefixes")
        try:
            await append_events(bus, renamed(events, in_nats), 0)
        finally:
            await bus.close()

    asyncio.run(publish())
    env = {"RB_NATS_URL": nats_url, "RB_NAMESPACE": namespace}
    replay = rb("replay", in_nats[:7], "--source", "nats", home=tmp_path, extra=env)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replaying execution {in_nats}" in replay.stdout and "JetStream" in replay.stdout
    auto = rb("replay", in_nats[:7], home=tmp_path, extra=env)
    assert auto.returncode == 0 and "JetStream" in auto.stdout
