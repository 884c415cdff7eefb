"""What every source shares: JSON bodies, schema validation answered as problems, field types.

Malformed bodies are 400 (`urn:rb:problem:invalid-body`), schema violations 422
(`urn:rb:problem:invalid-request`) with `errors: [{field, message, type}]`, the same shapes as the
API's own request validation (rb_api.problems).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError

from rb_api.dbutil import iso, utcnow
from rb_api.problems import ProblemError

M = TypeVar("M", bound=BaseModel)

# Ids that end up in a dedupe id and in the Nats-Msg-Id header: printable, bounded.
MAX_ID_LENGTH = 256
# Alerts (or CloudEvents) per request: each is one publish.
MAX_EVENTS = 1000


def _printable(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if not value.isprintable():
        raise ValueError("must be printable text (no control characters)")
    return value


def _timestamp(value: str) -> str:
    """An RFC 3339 / ISO 8601 timestamp, kept exactly as sent (it is part of dedupe ids)."""
    value = value.strip()
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 timestamp, like 2025-11-29T10:00:00Z") from None
    return value


Id = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH), AfterValidator(_printable)]
LongId = Annotated[str, StringConstraints(max_length=4 * MAX_ID_LENGTH), AfterValidator(_printable)]
Timestamp = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timestamp)]


def received_now() -> str:
    """When the API received an alert: UTC, ISO 8601."""
    return iso(utcnow()) or ""


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def malformed(detail: str, *, field: str = "body") -> ProblemError:
    return ProblemError(
        400,
        detail,
        slug="invalid-body",
        title="Malformed request body",
        errors=[{"field": field, "message": detail, "type": "json_invalid"}],
    )


def parse_json(body: bytes) -> Any:
    """The body as JSON; 400 when it is empty, not UTF-8 or not JSON."""
    if not body.strip():
        raise malformed("the request body is empty; a JSON document is expected")
    try:
        return json.loads(body.decode("utf-8-sig"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise malformed("the request body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "too deeply nested"
        raise malformed(f"the request body is not valid JSON: {reason}") from None


def errors_of(exc: ValidationError, where: str = "body") -> list[dict[str, Any]]:
    """pydantic errors as `{field, message, type}`; `field` is dotted, starting with `where`."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [where, *(str(part) for part in err.get("loc", ()))]
        out.append(
            {
                "field": ".".join(p for p in loc if p),
                "message": err.get("msg", "invalid"),
                "type": err.get("type"),
            }
        )
    return out


def invalid(errors: list[dict[str, Any]], what: str = "payload") -> ProblemError:
    shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return ProblemError(
        422,
        f"invalid {what}: {shown}{more}",
        slug="invalid-request",
        title="Invalid request",
        errors=errors,
    )


def validate(model: type[M], data: Any, *, where: str = "body", what: str = "payload") -> M:
    """`model` from parsed JSON; 422 naming every failing field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(errors_of(exc, where), what) from None


def parse(model: type[M], body: bytes, *, what: str = "payload") -> M:
    """Raw body -> validated model: 400 for malformed JSON, 422 for schema violations."""
    return validate(model, parse_json(body), what=what)


def string_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """The string-valued entries of a mapping (labels are strings)."""
    return {key: value for key, value in values.items() if isinstance(value, str)}


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()
