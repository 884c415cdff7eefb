"""RFC 9457 problem details: the one shape of every HTTP error rb answers (the API, and the
services' health endpoints), `application/problem+json`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:rb:problem:"


def problem_type(slug: str | None) -> str:
    return TYPE_PREFIX + slug if slug else "about:blank"


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    detail: str | None = None,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    errors: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`{type, title, status, detail, instance, errors?, ...extra}`; `extra` never overrides."""
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title or phrase(status),
        "status": status,
        "detail": detail or phrase(status),
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = errors
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body
