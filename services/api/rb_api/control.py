"""Operator control of a running execution: cancel, pause, resume as ControlCommands on NATS."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rb_api.problems import ProblemError
from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.messages import ControlCommand

log = logging.getLogger("rb_api")

ACTIONS: dict[str, EventType] = {
    "cancel": EventType.EXECUTION_CANCEL_REQUESTED,
    "pause": EventType.EXECUTION_PAUSED,
    "resume": EventType.EXECUTION_RESUMED,
}


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


def build_command(execution_id: str, action: str, actor: str, body: ControlBody | None) -> ControlCommand:
    data: dict[str, Any] = {"requested_via": "api"}
    if body is not None and body.reason:
        data["reason"] = body.reason
    return ControlCommand(execution_id=execution_id, type=ACTIONS[action].value, actor=actor, data=data)


async def publish_command(bus: Bus, command: ControlCommand, msg_id: str | None = None) -> None:
    try:
        await bus.js.publish(
            bus.names.control_subject(command.execution_id),
            command.encode(),
            headers={"Nats-Msg-Id": msg_id or uuid.uuid4().hex},
            stream=bus.names.inbox_stream,
            timeout=5.0,
        )
    except Exception as exc:
        log.warning("cannot publish %s for %s: %s", command.type, command.execution_id, exc)
        raise ProblemError(
            503,
            f"the command could not be published to NATS ({type(exc).__name__}); retry",
            slug="bus-unavailable",
            title="Message bus unavailable",
            headers={"Retry-After": "1"},
        ) from None
