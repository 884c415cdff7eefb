"""CloudEvents 1.0 over HTTP: structured, binary and batch content modes.

- structured: `Content-Type: application/cloudevents+json`, the body is one event
  `{specversion, id, source, type, subject?, time?, datacontenttype?, data | data_base64, ext...}`;
- batch: `Content-Type: application/cloudevents-batch+json`, the body is a JSON array of events;
- binary: the attributes are `ce-<name>` headers (values percent-encoded), the body is `data` and
  its media type is `Content-Type`.

A JSON object with a `specversion` member sent as plain `application/json` (no `ce-` headers) is
read as a structured event, as lenient receivers do. One AlertEvent per event: dedupe id
`source:id` (the pair is unique per the spec), name = type, labels = type, source, subject and
every string-valued extension attribute.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from rb_api.alerts.base import (
    MAX_EVENTS,
    Id,
    LongId,
    Timestamp,
    errors_of,
    invalid,
    lower_keys,
    media_type,
    parse_json,
    received_now,
)
from rb_api.problems import ProblemError
from rb_common.messages import AlertEvent

SOURCE = "cloudevents"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
HEADER_PREFIX = "ce-"
CONTEXT_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
)


class CloudEvent(BaseModel):
    """One event; attributes other than the context attributes and data are extensions."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: Id
    source: LongId
    type: Id
    subject: str | None = None
    time: Timestamp | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    data_base64: str | None = None

    @model_validator(mode="after")
    def _one_data(self) -> CloudEvent:
        if self.data is not None and self.data_base64 is not None:
            raise ValueError("an event has data or data_base64, not both")
        return self

    def extensions(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def attributes(self) -> dict[str, Any]:
        """Every attribute that is set (context and extensions), without the data."""
        out = {name: getattr(self, name) for name in CONTEXT_ATTRIBUTES if getattr(self, name) is not None}
        out.update(self.extensions())
        return out


def _json_media(media: str) -> bool:
    return media in ("application/json", "text/json") or media.endswith("+json")


def _event(data: Any, where: str) -> CloudEvent:
    if not isinstance(data, dict):
        raise invalid(
            [{"field": where, "message": "an event must be a JSON object", "type": "dict_type"}], "CloudEvent"
        )
    try:
        return CloudEvent.model_validate(data)
    except ValidationError as exc:
        raise invalid(errors_of(exc, where), "CloudEvent") from None


def _batch(data: Any) -> list[CloudEvent]:
    if not isinstance(data, list):
        raise invalid(
            [{"field": "body", "message": "a batch is a JSON array of events", "type": "list_type"}],
            "CloudEvents batch",
        )
    if len(data) > MAX_EVENTS:
        raise invalid(
            [{"field": "body", "message": f"at most {MAX_EVENTS} events per batch", "type": "too_long"}],
            "CloudEvents batch",
        )
    events: list[CloudEvent] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        try:
            events.append(_event(item, f"body.{index}"))
        except ProblemError as exc:
            errors.extend(exc.errors or [])
    if errors:
        raise invalid(errors, "CloudEvents batch")
    return events


def _binary(body: bytes, headers: dict[str, str]) -> CloudEvent:
    attributes: dict[str, Any] = {
        name[len(HEADER_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX)
    }
    content_type = headers.get("content-type")
    media = media_type(content_type)
    if content_type:
        attributes["datacontenttype"] = content_type
    for name in ("data", "data_base64"):
        attributes.pop(name, None)  # not attributes: the body is the data
    try:
        event = CloudEvent.model_validate(attributes)
    except ValidationError as exc:
        errors = errors_of(exc, "")
        for error in errors:
            error["field"] = "header." + HEADER_PREFIX + error["field"]
        raise invalid(errors, "CloudEvent (binary mode)") from None
    if not body:
        return event
    if _json_media(media):
        return event.model_copy(update={"data": parse_json(body)})
    try:
        return event.model_copy(update={"data": body.decode("utf-8")})
    except UnicodeDecodeError:
        return event.model_copy(update={"data_base64": base64.b64encode(body).decode("ascii")})


def parse(body: bytes, headers: Mapping[str, str]) -> list[CloudEvent]:
    """The events of a request in any content mode; 400 malformed JSON, 415, 422 missing attributes."""
    lowered = lower_keys(headers)
    media = media_type(lowered.get("content-type"))
    if media == BATCH:
        return _batch(parse_json(body))
    if media == STRUCTURED:
        return [_event(parse_json(body), "body")]
    if media.startswith("application/cloudevents"):
        raise ProblemError(
            415,
            f"unsupported CloudEvents format {media!r}: use {STRUCTURED}, {BATCH} or binary mode",
            slug="unsupported-media-type",
            title="Unsupported Media Type",
        )
    if any(name.startswith(HEADER_PREFIX) for name in lowered):
        return [_binary(body, lowered)]
    if media in ("", "application/json") and body.lstrip()[:1] == b"{":
        data = parse_json(body)
        if isinstance(data, dict) and "specversion" in data:
            return [_event(data, "body")]
    return [_binary(body, lowered)]  # binary mode without its headers: 422 naming them


def dedupe_id(event: CloudEvent) -> str:
    return f"{event.source}:{event.id}"


def labels_of(event: CloudEvent) -> dict[str, str]:
    labels = {name: value for name, value in event.extensions().items() if isinstance(value, str)}
    labels.update({"type": event.type, "source": event.source})
    if event.subject:
        labels["subject"] = event.subject
    return labels


def normalise(
    payload: list[CloudEvent], headers: Mapping[str, str] | None = None, *, received_at: str | None = None
) -> list[AlertEvent]:
    """One AlertEvent per CloudEvent."""
    received = received_at or received_now()
    out: list[AlertEvent] = []
    for event in payload:
        event_id = dedupe_id(event)
        body: dict[str, Any] = {"data": event.data, **event.attributes()}
        if event.data_base64 is not None:
            body["data_base64"] = event.data_base64
        out.append(
            AlertEvent(
                source=SOURCE,
                dedupe_id=event_id,
                name=event.type,
                labels=labels_of(event),
                starts_at=event.time,
                group=[event_id],
                payload=body,
                received_at=received,
            )
        )
    return out
