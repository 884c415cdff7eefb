"""The OpenAPI document, completed with what the middleware answers before any route runs.

`install_openapi(app)` wraps FastAPI's generator once; the document it serves at /openapi.json
then declares, on every operation, the statuses the ASGI middleware and the app-wide handlers
answer (all `application/problem+json` with the `Problem` schema of `rb_api.problem_docs`):

- 401 and 503 where `rb_api.auth` checks credentials (503: the database cannot check them);
- 400 and 413 on methods with a body (input guard, body limit), 415 where
  `rb_api.middleware.accepted_types` decides the Content-Type;
- 422 on operations with parameters or a body (FastAPI's own `HTTPValidationError` entry is
  replaced: rb answers validation errors as problems), 503 wherever the database is read.

GraphQL answers GraphiQL (HTML) to a GET without a query; its request errors are problems too
(`rb_api.graphql_problems`).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from rb_api.auth import GRAPHQL_PATH, needs_credentials
from rb_api.middleware import accepted_types
from rb_api.problem_docs import PROBLEM_SCHEMA, problem_content, problem_response, problem_schema

_PARAM = re.compile(r"\{[^}]+\}")
_WITH_BODY = frozenset({"post", "put", "patch", "delete"})
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
# Operations that touch neither the database nor credentials.
_NO_DATABASE = frozenset({("get", "/health/live")})
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def _concrete(path: str) -> str:
    """A request path the template matches (`{id}` -> `x`), for the middleware's own checks."""
    return _PARAM.sub("x", path)


def middleware_statuses(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The problem statuses answered for `method path` besides what its route raises."""
    concrete = _concrete(path)
    codes: list[int] = []
    if needs_credentials(concrete) or path == GRAPHQL_PATH:
        codes.append(401)
    if method in _WITH_BODY:
        codes += [400, 413]
    if accepted_types(method.upper(), concrete) is not None:
        codes.append(415)
    if operation.get("parameters") or operation.get("requestBody"):
        codes.append(422)
    if (method, path) not in _NO_DATABASE:
        codes.append(503)
    return codes


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref.endswith("/HTTPValidationError"):
            return True
    return False


def _complete_graphql(method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    ok = responses.setdefault("200", {"description": "GraphQL response"})
    content = ok.setdefault("content", {})
    content.setdefault("application/json", {"schema": {"type": "object"}})
    if method == "get":  # GraphiQL, when there is no query
        content["text/html"] = {"schema": {"type": "string"}}
    responses.setdefault("400", problem_response(400, "no query, a mutation over GET, malformed JSON"))


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add the middleware's statuses and the Problem schema to a FastAPI OpenAPI document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[PROBLEM_SCHEMA] = problem_schema()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for key, response in list(responses.items()):
                if _is_fastapi_validation(response):
                    responses[key] = problem_response(int(key))
            for code in middleware_statuses(method, path, operation):
                responses.setdefault(str(code), problem_response(code))
            for key, response in responses.items():
                if key[0] in "45" and not response.get("content"):
                    response["content"] = problem_content()
            if path == GRAPHQL_PATH:
                _complete_graphql(method, operation)
    if "HTTPValidationError" not in str(document.get("paths")):
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
