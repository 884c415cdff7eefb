"""Replay --live: external steps run again against the real peer and their results are diffed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration


async def test_live_replay_reports_a_changed_world(http_server, tmp_path: Path) -> None:
    http_server.ok("/inventory", {"hosts": ["web-1", "web-2"]})
    runbook, _ = load_runbook_text(f"""
id: live
name: Live
steps:
  - id: fetch
    type: http
    inputs: {{url: "{http_server.url_for("/inventory")}", auth_token: "${{secrets.TOKEN}}"}}
    outputs: {{hosts: "$.hosts"}}
  - {{id: count, type: transform, depends_on: [fetch], inputs: {{n: "${{len(steps.fetch.outputs.hosts)}}"}}}}
""")
    store = InMemoryEventStore()
    registry = default_registry()
    state = await Runner(
        store, PluginExecutor(registry), SystemClock(), Settings(), secrets={"TOKEN": "tok-123456"}
    ).run(RunRequest(runbook=runbook))
    events = store.read(state.execution_id)
    live = Replayer(PluginExecutor(registry), Settings(), live=True, secrets={"TOKEN": "tok-123456"})
    assert (await live.replay(events)).verified
    assert len(http_server.requests_to("/inventory")) == 2
    assert http_server.requests_to("/inventory")[1].headers["authorization"] == "Bearer tok-123456"

    http_server.ok("/inventory", {"hosts": ["web-1", "web-2", "web-3"]})
    report = await live.replay(events)
    assert [(d.step, d.field) for d in report.deviations] == [("fetch", "result (live)")]
    assert report.deviations[0].replayed == {"hosts": ["web-1", "web-2", "web-3"]}
    # Without --live the recorded results are trusted and the run still verifies.
    assert (await Replayer(PluginExecutor(registry), Settings()).replay(events)).verified
