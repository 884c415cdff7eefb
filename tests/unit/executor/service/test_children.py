"""BusChildren (a `runbook` step's child): the registry read waits out a database that cannot be
reached (a restart, a failover) instead of failing the parent; the step's own timeout bounds it.

The database is a real SQLite file whose directory does not exist yet (OperationalError: unable
to open database file); the bus is the in-memory twin (the child has no stream yet)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from rb_common.memory_bus import memory_bus
from rb_common.settings import Settings
from rb_engine.child_runs import ChildError, ChildRequest
from rb_executor.service.children import BusChildren
from rb_store.db import make_engine, migrate

REQUEST = ChildRequest(
    runbook_id="rb-child",
    params={},
    execution_id="c" * 32,
    parent_execution_id="p" * 32,
    parent_step_id="call",
    depth=1,
    actor="key:test",
)


async def _logged(caplog: pytest.LogCaptureFixture, text: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(text in r.getMessage() for r in caplog.records) < count:
        assert time.monotonic() < deadline, f"{count} x {text!r} not logged within {timeout}s"
        await asyncio.sleep(0.05)


async def test_an_unreachable_registry_is_read_again_until_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rb_executor.service.children")
    path = tmp_path / "not-yet" / "rb.db"
    engine = make_engine(f"sqlite:///{path}")
    attempt = asyncio.ensure_future(BusChildren(memory_bus(), Settings(), engine).run(REQUEST))
    await _logged(caplog, "cannot read the registry for rb-child ((sqlite3.OperationalError) unable to open database file)", 2)
    assert not attempt.done()  # the step waits; it has not failed

    path.parent.mkdir()
    await asyncio.to_thread(migrate, engine)  # the database is back (with no such runbook)
    # The read now answers: the runbook is not registered, which is the step's own failure.
    with pytest.raises(ChildError, match="rb-child is not a registered runbook"):
        await asyncio.wait_for(attempt, 15)


async def test_the_steps_timeout_ends_the_wait(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'never' / 'rb.db'}")
    children = BusChildren(memory_bus(), Settings(), engine)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):  # what run_attempt does with the step's timeout
            await children.run(REQUEST)
