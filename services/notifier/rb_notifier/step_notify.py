"""`notify` steps: the notifier is their worker.

The executor sends no task for a notify step (rb_executor NOT_TASKS). The notifier sees the
step's `step.scheduled` event on the execution's stream like every other event, and delivers
each channel the step names (`slack: {channel}`, `email: {to, subject}`, `webhook: {url}`) with
its durable delivery: intent, retries, outcome, all keyed by that event's id, so one attempt of
the step is delivered once however often the event comes. When every channel is sent or
failed, it reports the step's outcome to `rb.result.<execution>` exactly as a worker would
(message id `<idempotency key>:done`): `step.succeeded` with `{channels: {key: {attempts, ts}}}`
or `step.failed` naming the channel that failed. The coordinator takes it through the one
applier; a late report (the step was cancelled meanwhile) is stale and dropped.

Webhook URLs of notify steps go through the egress policy (RB_EGRESS_ALLOW), like every step
that connects somewhere.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rb_common.canonical import digest
from rb_common.events import Event, EventType
from rb_common.expressions import mentions_secrets
from rb_common.messages import StepOutcome
from rb_common.outputs import OutputError, extract_outputs
from rb_common.payloads import StepFailed, StepScheduled, StepSucceeded
from rb_engine.egress import EgressRefused
from rb_notifier.delivery import PermanentError, Receipt, message_id
from rb_notifier.email import build_message, stable_message_id
from rb_notifier.rules import Destination, EmailDestination, SlackDestination, WebhookDestination

if TYPE_CHECKING:
    from rb_notifier.delivery import Ledger
    from rb_notifier.service import Item, Notifier

STEP_TYPE = "notify"
ON = "step"  # the `on` of the notification records of a notify step


@dataclass(frozen=True)
class StepNotice:
    """A notify step's attempt, from its step.scheduled event."""

    step_id: str
    attempt: int
    phase: str
    idempotency_key: str
    inputs: dict[str, Any]
    runbook_id: str = ""
    outputs: Any = None  # the step's output specs

    def targets(self) -> list[Destination]:
        out: list[Destination] = []
        slack, email, webhook = (self.inputs.get(k) for k in ("slack", "email", "webhook"))
        if isinstance(slack, dict) and isinstance(slack.get("channel"), str):
            out.append(SlackDestination(slack["channel"]))
        if isinstance(email, dict) and email.get("to"):
            to = email["to"]
            out.append(EmailDestination(tuple([to] if isinstance(to, str) else map(str, to))))
        if isinstance(webhook, dict) and isinstance(webhook.get("url"), str):
            out.append(WebhookDestination(webhook["url"]))
        return out

    @property
    def message(self) -> str:
        return str(self.inputs.get("message") or "")

    @property
    def subject(self) -> str:
        email = self.inputs.get("email")
        subject = email.get("subject") if isinstance(email, dict) else None
        text = str(subject) if subject else f"[rb] {self.runbook_id}: {self.step_id}"
        return text.replace("\r", " ").replace("\n", " ")


def notice_of(event: Event) -> StepNotice | None:
    """The notify step attempt an event schedules, or None."""
    if event.type != EventType.STEP_SCHEDULED or event.data.get("step_type") != STEP_TYPE:
        return None
    scheduled = event.payload_as(StepScheduled)
    inputs = scheduled.inputs if isinstance(scheduled.inputs, dict) else {}
    return StepNotice(
        scheduled.step_id, scheduled.attempt, scheduled.phase, scheduled.idempotency_key, inputs
    )


def with_definition(notice: StepNotice, state: Any) -> StepNotice:
    """The notice with the runbook's id and the step's output specs (main phase only)."""
    outputs = state.definition.step(notice.step_id).outputs if notice.phase == "main" else {}
    return StepNotice(**{**notice.__dict__, "runbook_id": state.definition.id, "outputs": outputs})


def sender(notifier: Notifier, item: Item, thread: Any) -> Any:
    """What sends one channel of a notify step: the step's message as it is."""
    notice = item.step
    assert notice is not None
    event, target = item.event, item.target
    text = notifier._mask(notice.message)  # values never to show (RB_SECRET_*, its own keys)
    if mentions_secrets(notice.inputs):

        async def refused() -> Receipt:
            raise PermanentError("a notify step's inputs may not read secrets")

        return refused
    if isinstance(target, SlackDestination):
        slack = notifier.slack
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]

        async def to_slack() -> Receipt:
            if slack is None:
                raise PermanentError("Slack is not configured (set RB_SLACK_TOKEN)")
            channel = (thread.slack_channel or target.channel) if thread else target.channel
            return await slack.post(
                channel,
                text[:3000],
                blocks,
                thread_ts=thread.ts if thread else None,
                metadata=notifier._metadata(item),
            )

        return to_slack
    if isinstance(target, EmailDestination):
        email = notifier.email
        message = build_message(
            sender=notifier.config.notify_from,
            to=target.to,
            cc=target.cc,
            subject=notice.subject,
            text=text + "\n",
            html=f"<pre>{html.escape(text)}</pre>",
            message_id=stable_message_id(f"{event.id}:{target.key}"),
            thread_id=stable_message_id(f"{event.execution_id}:{target.key}"),
        )

        async def to_email() -> Receipt:
            if email is None:
                raise PermanentError("email is not configured (set RB_SMTP_URL)")
            return await email.send(message)

        return to_email
    assert isinstance(target, WebhookDestination)
    webhook = notifier.step_webhook
    payload = {
        "event": ON,
        "execution_id": event.execution_id,
        "runbook_id": notice.runbook_id,
        "step_id": notice.step_id,
        "attempt": notice.attempt,
        "message": text,
    }
    url = target.url

    async def to_webhook() -> Receipt:
        if webhook is None:
            raise PermanentError("webhooks are not configured")
        try:
            return await webhook.post(url, payload, idempotency_key=message_id(event.id, target.key))
        except EgressRefused as exc:
            raise PermanentError(exc.message) from None  # retrying will not change the policy

    return to_webhook


def outcome(notice: StepNotice, event: Event, ledger: Ledger, keys: list[str]) -> StepSucceeded | StepFailed:
    """The step's outcome once every channel is sent or failed."""
    channels: dict[str, Any] = {}
    for key in keys:
        track = ledger.track(event.id, key)
        if track.failed is not None:
            return StepFailed(
                step_id=notice.step_id,
                attempt=notice.attempt,
                phase=notice.phase,
                error=f"notification to {key} failed: {track.failed.error or 'unknown error'}",
                retryable=False,
            )
        sent = track.sent
        channels[key] = {"attempts": sent.attempts if sent else None, "ts": sent.ts if sent else None}
    result = {"channels": channels}
    try:
        outputs = extract_outputs(notice.outputs or {}, result)
    except OutputError as exc:
        return StepFailed(
            step_id=notice.step_id,
            attempt=notice.attempt,
            phase=notice.phase,
            error=str(exc),
            retryable=False,
        )
    return StepSucceeded(
        step_id=notice.step_id,
        attempt=notice.attempt,
        phase=notice.phase,
        result=result,
        outputs=outputs,
        digest=digest(result),
        meta={},
    )


def items(notifier: Notifier, event: Event, history: list[Event], notice: StepNotice) -> list[Item]:
    """One item per channel the step names."""
    from rb_notifier.service import Item

    state, summary = notifier._summary(history, event, "started")
    notice = with_definition(notice, state)
    trigger: Any = ON
    return [Item(event, trigger, summary, target, [], step=notice) for target in notice.targets()]


async def report(
    notifier: Notifier, notice: StepNotice, event: Event, keys: list[str], *, error: str | None = None
) -> None:
    """Every channel of the step is final: report its outcome, as a worker would (`error`: the
    step fails without any channel tried)."""
    if keys and error is None:
        ledger = await notifier._ledger(event.execution_id)
        result = outcome(notice, event, ledger, keys)
    else:
        result = StepFailed(
            step_id=notice.step_id,
            attempt=notice.attempt,
            phase=notice.phase,
            error=error or "the notify step names no channel (slack.channel, email.to or webhook.url)",
            retryable=False,
        )
    message = StepOutcome(execution_id=event.execution_id, type=result.TYPE.value, data=result.dump())
    await notifier.js.publish(
        notifier.bus.names.result_subject(event.execution_id),
        message.encode(),
        headers={"Nats-Msg-Id": f"{notice.idempotency_key}:done"},
        stream=notifier.bus.names.inbox_stream,
    )
