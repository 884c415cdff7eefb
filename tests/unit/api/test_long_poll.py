"""rb_api.long_poll on the real app (memory bus, SQLite): a long poll whose reads queue behind a
busy lane still answers when its wait is up."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
from sqlalchemy import Engine

from rb_api.deps import Services
from rb_store.recorder import Recorder


async def test_a_long_poll_answers_when_its_wait_is_up_though_its_reads_are_queued(
    client: httpx.AsyncClient, engine: Engine, executions: Any
) -> None:
    events = await executions.run()
    started = next(i for i, e in enumerate(events) if e.type == "step.started")
    running = events[: started + 1]
    await executions.publish(running)
    recorder = Recorder(engine)
    for event in running:
        recorder.apply(event)
    execution_id = events[0].execution_id

    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    svc = transport.app.state.services  # type: ignore[attr-defined]
    assert isinstance(svc, Services) and svc.ended.listening
    release = threading.Event()
    busy = [asyncio.create_task(svc.poll_reads.run(release.wait, 30)) for _ in range(svc.poll_reads.threads)]
    try:
        began = time.monotonic()
        answer = await asyncio.wait_for(client.get(f"/api/v1/executions/{execution_id}", params={"wait": 1}), 10)
        took = time.monotonic() - began
    finally:
        release.set()
        await asyncio.gather(*busy)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "RUNNING"
    assert 1.0 <= took < 3.0, took
