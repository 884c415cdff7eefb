"""Once an approval step is settled (approved, rejected, timed out), its approval_requested Slack
message shows the outcome instead of the Approve / Reject buttons (chat.update), whoever decided
and however (API, CLI, email, Slack, timeout). Best effort: the record of the outcome is the
execution's stream; a message that cannot be updated is logged and stays as it was."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rb_common import bus as nats_bus
from rb_common.events import Event, EventType
from rb_common.payloads import NotificationSent, StepSucceeded
from rb_notifier import render
from rb_notifier.delivery import PermanentError, TransientError

if TYPE_CHECKING:
    from rb_notifier.service import Notifier

log = logging.getLogger("rb_notifier")

TIMED_OUT_SKIP = "approval timed out"


def settles_approval(event: Event) -> bool:
    """Cheap: whether `event` is the outcome of an approval step (no stream read)."""
    if event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_FAILED):
        return "approval_id" in event.data
    return event.type == EventType.STEP_SKIPPED and str(event.data.get("reason") or "").startswith(
        TIMED_OUT_SKIP
    )


def outcome_text(event: Event) -> str:
    if event.type == EventType.STEP_SUCCEEDED:
        result = event.payload_as(StepSucceeded).result or {}
        if result.get("timed_out"):
            return ":hourglass: Approved: nobody decided in time (timeout_action approve)"
        return ":white_check_mark: Approved by " + ", ".join(result.get("approved_by") or [])
    if event.type == EventType.STEP_FAILED:
        return f":x: {str(event.data.get('error') or 'rejected').capitalize()}"
    return f":hourglass: {str(event.data.get('reason') or TIMED_OUT_SKIP).capitalize()}: step skipped"


async def announce(notifier: Notifier, event: Event) -> None:
    slack = notifier.slack
    if slack is None or not settles_approval(event):
        return
    events = [e for e, _ in await nats_bus.read_execution(notifier.bus, event.execution_id)]
    step_id = event.data.get("step_id")
    requested = next(
        (e for e in events if e.type == EventType.APPROVAL_REQUESTED and e.data.get("step_id") == step_id),
        None,
    )
    if requested is None:
        return
    from rb_notifier import service  # imports this module

    sent = [e.payload_as(NotificationSent) for e in events if e.type == EventType.NOTIFICATION_SENT]
    # Also what the inbox holds and the executor may not have appended to the stream yet.
    for outcome in await service.read_outcomes(notifier.bus, event.execution_id):
        if outcome.type == EventType.NOTIFICATION_SENT:
            sent.append(NotificationSent.model_validate(outcome.data))
    receipts = {
        (s.slack_channel, s.ts)
        for s in sent
        if s.event_id == requested.id and s.channel.startswith("slack:") and s.slack_channel and s.ts
    }
    if not receipts:
        return
    history = events[: events.index(requested) + 1]
    _, summary = notifier._summary(history, requested, "approval_requested")
    text = outcome_text(event)
    blocks = [b for b in render.slack_blocks(summary) if b.get("block_id") != render.APPROVAL_BLOCK]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    for channel, ts in sorted(receipts, key=str):
        assert channel is not None and ts is not None
        try:
            await slack.update(channel, ts, f"{summary.headline}: {text}", blocks)
        except (TransientError, PermanentError) as exc:
            log.warning("%s: cannot update the approval message %s: %s", event.execution_id, ts, exc)
