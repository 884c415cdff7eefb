"""`rb trigger`: execute a registered runbook through the API (optionally waiting for its end),
or publish a raw alert event for the router."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from rb_cli.api_client import call
from rb_cli.follow import follow
from rb_cli.resolve import read_mapping
from rb_cli.run_cmd import Fact, Param
from rb_cli.stack import cli_settings
from rb_cli.ui import console, err_console, examples, key_values
from rb_common.errors import RbError
from rb_common.settings import Settings

EXAMPLES = examples(
    "rb trigger rb-000-hello -p greeting=hi            # prints the execution id and what to run next",
    "rb trigger rb-000-hello -p greeting=hi --follow   # stream its events; exit 0 if it succeeds",
    "rb trigger rb-000-hello --wait                    # quietly wait; exit with the run's status",
    "rb trigger --event alert.yaml                     # publish an alert event for the router",
)


def trigger(
    runbook_id: Annotated[
        str | None,
        typer.Argument(metavar="RUNBOOK_ID", help="a runbook registered (and approved) in the API"),
    ] = None,
    param: Param = [],  # noqa: B006
    fact: Fact = [],  # noqa: B006
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="the same key never starts a second run")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait for the run to end; exit 0 if it succeeded, 1 if not")
    ] = False,
    follow_run: Annotated[
        bool, typer.Option("--follow", "-f", help="stream the run's events until it ends; exit like --wait")
    ] = False,
    event: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="publish this alert event (JSON/YAML) to NATS for routing"),
    ] = None,
) -> None:
    """Execute a registered runbook through the API and print its execution id, or publish a raw
    alert event with --event."""
    settings = cli_settings()
    if event is not None:
        _publish_event(event, settings)
        return
    if not runbook_id:
        raise RbError("give a RUNBOOK_ID, or --event FILE")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = {"params": key_values(param), "assumptions": key_values(fact, "--fact")}
    result = call("POST", f"/api/v1/runbooks/{runbook_id}/execute", settings, json=body, headers=headers)
    execution_id = result["execution_id"]
    out = console()
    out.print(f"execution id: {execution_id} ({result['status']})")
    if not (wait or follow_run):
        err_console().print(
            f"[dim]next: rb logs {execution_id} --follow   (or rb replay {execution_id} once it ended)[/dim]"
        )
        return
    final = follow(execution_id, settings, out if follow_run else None)
    out.print(f"execution {execution_id} {final or 'ended without a final status'}")
    raise typer.Exit(0 if final == "SUCCEEDED" else 1)


def _publish_event(path: Path, settings: Settings) -> None:
    """An AlertEvent from a file onto rb.alert.<source>: the scheduler's router matches it to
    approved runbooks exactly as alerts posted to the API."""
    import uuid
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from rb_common.bus import connect
    from rb_common.messages import AlertEvent
    from rb_common.registry_events import last_seq

    data = read_mapping(path)
    data.setdefault("dedupe_id", uuid.uuid4().hex)
    data.setdefault("received_at", datetime.now(UTC).isoformat())
    try:
        alert = AlertEvent.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RbError(f"{path}: {'.'.join(map(str, err['loc'])) or '(document)'}: {err['msg']}") from None

    async def publish() -> bool:
        bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-cli", connect_timeout=3)
        try:
            event = alert
            if event.registry_seq is None:
                # Matched against the registry as of now, as alerts posted to the API are.
                event = alert.model_copy(update={"registry_seq": await last_seq(bus)})
            ack = await bus.js.publish(
                bus.names.alert_subject(alert.source),
                event.encode(),
                headers={"Nats-Msg-Id": f"{alert.source}:{alert.dedupe_id}"},
                stream=bus.names.triggers_stream,
            )
            return bool(ack.duplicate)
        finally:
            await bus.close()

    from rb_cli.services import answers

    if not answers(settings.nats_url, timeout=2):  # the client would retry forever
        raise RbError(
            f"cannot reach NATS at {settings.nats_url}: start the stack with `rb up`, or set RB_NATS_URL"
        )
    try:
        duplicate = asyncio.run(publish())
    except OSError as exc:
        raise RbError(
            f"cannot reach NATS at {settings.nats_url}: {exc}: start the stack with `rb up`, or set RB_NATS_URL"
        ) from None
    state = "duplicate (already published)" if duplicate else "published"
    console().print(f"alert {alert.source}:{alert.dedupe_id} {state}")
