"""How the OpenAPI document declares problem answers: `problems_for(401, 404, ...)` gives a
route's `responses=` entries, each `application/problem+json` with the `Problem` schema
(`#/components/schemas/Problem`, put into the document by `rb_api.openapi`).

    @router.get("/{id}", responses=problems_for(404, 422))   # or rb_api.problems.problem_responses

Statuses the middleware answers (401, 400/413/415 on bodies, 503) are added to every operation by
`rb_api.openapi`; a route names those its own code raises.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rb_common.problems import PROBLEM_JSON, phrase

PROBLEM_SCHEMA = "Problem"
PROBLEM_REF = f"#/components/schemas/{PROBLEM_SCHEMA}"

# What each status means in rb (one place, so every route describes it the same way).
MEANINGS: dict[int, str] = {
    400: "malformed request: body not UTF-8 or nested too deeply, invalid JSON, bad Content-Length",
    401: "no credentials, or invalid, expired or revoked ones (WWW-Authenticate: Bearer)",
    403: "the identity lacks the role, the team, or the link is refused",
    404: "no such resource (or hidden from this identity's teams)",
    409: "conflicts with the resource's current state",
    413: "the request body is larger than the limit",
    415: "the Content-Type is not one this operation accepts",
    422: "the request is well-formed but invalid (`errors` lists each problem)",
    429: "too many requests (Retry-After)",
    502: "the execution's recorded events cannot be read back (a corrupt record)",
    503: "a dependency (database, NATS, secret store) is unavailable (Retry-After)",
}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the API is answered."""

    model_config = ConfigDict(extra="allow", title=PROBLEM_SCHEMA)

    type: str = Field(description="urn:rb:problem:<slug>, or about:blank")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = Field(default=None, description="the request path")
    errors: list[Any] | None = Field(default=None, description="one entry per problem found")


def problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}


# Headers every answer of a status carries (response_headers_conformance checks them).
HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'the challenge: Bearer realm="rb"[, error="invalid_token"]',
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def problem_response(code: int, description: str | None = None) -> dict[str, Any]:
    """One `responses` entry: problem+json with the Problem schema."""
    entry: dict[str, Any] = {
        "description": description or MEANINGS.get(code) or phrase(code),
        "content": problem_content(),
    }
    if code in HEADERS:
        entry["headers"] = HEADERS[code]
    return entry


def problems_for(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of a route's problem statuses (problem+json)."""
    return {code: problem_response(code) for code in codes}


def problem_schema() -> dict[str, Any]:
    return Problem.model_json_schema()
