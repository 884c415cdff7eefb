"""Tamper evidence: verify an execution's hash chain and name the first event that breaks it."""

from __future__ import annotations

from dataclasses import dataclass

from rb_common.events import Event, EventType


@dataclass(frozen=True)
class AuditProblem:
    seq: int | None
    event_id: str | None
    problem: str

    def __str__(self) -> str:
        where = f"event {self.seq} ({self.event_id})" if self.seq is not None else "stream"
        return f"{where}: {self.problem}"


def verify_chain(events: list[Event]) -> list[AuditProblem]:
    """Edited, removed, inserted or reordered events, each named; [] when the chain holds."""
    problems: list[AuditProblem] = []
    if not events:
        return [AuditProblem(None, None, "no events")]
    if events[0].type != EventType.EXECUTION_REQUESTED:
        problems.append(
            AuditProblem(events[0].seq, events[0].id, "the first event is not execution.requested")
        )
    previous: Event | None = None
    for position, event in enumerate(events, start=1):
        if event.hash is None:
            problems.append(AuditProblem(event.seq, event.id, "event carries no hash (unsealed)"))
        elif event.hash != event.computed_hash():
            problems.append(AuditProblem(event.seq, event.id, "content does not match its hash (edited)"))
        if event.seq != position:
            problems.append(
                AuditProblem(
                    event.seq,
                    event.id,
                    f"sequence {event.seq} at position {position} (removed, inserted or reordered)",
                )
            )
        expected_prev = previous.hash if previous else None
        if event.prev_hash != expected_prev:
            problems.append(
                AuditProblem(
                    event.seq, event.id, "does not follow its predecessor (removed, inserted or reordered)"
                )
            )
        previous = event
    return problems


def audit_record(events: list[Event]) -> dict[str, object]:
    """Who asked for the execution, under which legal basis and assumptions."""
    requested = events[0].data if events and events[0].type == EventType.EXECUTION_REQUESTED else {}
    runbook = requested.get("runbook") or {}
    return {
        "execution_id": events[0].execution_id if events else None,
        "runbook_id": runbook.get("id"),
        "runbook_version": runbook.get("version"),
        "actor": requested.get("actor"),
        "legal_basis": requested.get("legal_basis"),
        "assumptions": [a for a in runbook.get("assumptions", [])],
        "facts": requested.get("facts", {}),
        "trigger": requested.get("trigger", {}),
        "events": len(events),
        "head_hash": events[-1].hash if events else None,
    }
