"""The notifier and approval steps: approval_requested goes to Slack with Approve / Reject
buttons; once the step is settled (by whoever, however), the message's buttons give way to the
outcome (chat.update)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from rb_common.bus import Bus
from rb_common.events import Event
from rb_common.loader import load_runbook_text
from rb_common.messages import StepOutcome
from rb_common.payloads import ApprovalDecided, ApprovalRequested
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_notifier import service
from rb_notifier.config import NotifierConfig
from rb_notifier.delivery import Receipt
from rb_notifier.service import Notifier

RUNBOOK = """
id: gated-notify
name: Gated
notify:
  - "on": [approval_requested]
    slack: {channel: "#approvals"}
steps:
  - id: gate
    type: approval
    inputs: {approvers: [bob], prompt: "Purge?", timeout: 1h, timeout_action: %s}
  - {id: after, type: transform, depends_on: [gate], inputs: {a: 1}}
"""


class Inbox:
    """What the notifier publishes (its records), and the execution's events it reads."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str], stream: str) -> None:
        self.published.append((subject, json.loads(payload)))


class Slack:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]], **_: Any) -> Receipt:
        ts = f"1700000000.{len(self.posts) + 1:06d}"
        self.posts.append({"channel": channel, "text": text, "blocks": blocks, "ts": ts})
        return Receipt(ts=ts, slack_channel="C0APPROVALS")

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self.updates.append({"channel": channel, "ts": ts, "text": text, "blocks": blocks})


async def run(action: str, decisions: list[tuple[str, str]]) -> list[Event]:
    model, _ = load_runbook_text(RUNBOOK % action)
    store = InMemoryEventStore()

    def decide(request: ApprovalRequested) -> list[ApprovalDecided]:
        return [
            ApprovalDecided(
                step_id=request.step_id, approval_id=request.approval_id, decision=d, actor=a, via="api"
            )
            for a, d in decisions
        ]

    runner = Runner(
        store,
        PluginExecutor(default_registry()),
        FakeClock(datetime.now(UTC)),
        Settings(),
        decide_approval=decide,
    )
    await runner.run(RunRequest(runbook=model, execution_id="exec-gate", trigger={"actor": "key:carol"}))
    return store.read("exec-gate")


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(inbox: Inbox) -> None:
        async def read_execution(
            _bus: Any, execution_id: str, timeout: float = 10.0
        ) -> list[tuple[Event, int]]:
            return [(e, i) for i, e in enumerate(inbox.events, 1)]

        async def read_outcomes(_bus: Any, execution_id: str, timeout: float = 10.0) -> list[StepOutcome]:
            return [StepOutcome.model_validate(body) for _, body in inbox.published]

        monkeypatch.setattr(service.nats_bus, "read_execution", read_execution)
        monkeypatch.setattr(service, "read_outcomes", read_outcomes)

    return install


@pytest.mark.parametrize(
    ("action", "decisions", "outcome"),
    [
        ("fail", [("key:bob", "approve")], "Approved by key:bob"),
        ("fail", [("key:bob", "reject")], "Rejected by key:bob"),
        ("skip", [], "Approval timed out after 3600s: step skipped"),
    ],
)
async def test_the_buttons_give_way_to_the_outcome(
    wire: Any, action: str, decisions: list[tuple[str, str]], outcome: str
) -> None:
    events = await run(action, decisions)
    inbox = Inbox(events)
    wire(inbox)
    slack = Slack()
    notifier = Notifier(Bus(None, inbox), NotifierConfig(), slack=slack)  # type: ignore[arg-type]
    for event in events:
        await notifier.handle(event)
    [post] = slack.posts
    [buttons] = [b for b in post["blocks"] if b.get("block_id") == "rb_approval"]
    assert [e["value"] for e in buttons["elements"]] == ["exec-gate:gate", "exec-gate:gate"]
    [update] = slack.updates
    assert update["ts"] == post["ts"] and update["channel"] == "C0APPROVALS"
    assert all(b.get("block_id") != "rb_approval" for b in update["blocks"])
    assert outcome in update["text"], update["text"]
    assert outcome in update["blocks"][-1]["elements"][0]["text"]
