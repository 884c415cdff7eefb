"""The OpenAPI document declares what the API really answers (issue 12): 401 on every route behind
credentials, 403 on every role-gated one, every problem as application/problem+json with the
Problem schema, and the status vocabularies (`rb_common.statuses`, the registry's, the alerts',
the events' types) as enums of the answers' schemas. Schemathesis checks the answers themselves
against this document (tests/integration/api/test_api_schemathesis.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from rb_api import alert_records, registry
from rb_api.app import create_app
from rb_api.auth import GRAPHQL_PATH, needs_credentials
from rb_api.openapi import middleware_statuses
from rb_common import statuses
from rb_common.events import EventType
from rb_common.problems import PROBLEM_JSON
from rb_common.settings import Settings

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(home=Path(tmp_path_factory.mktemp("openapi"))))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _concrete(path: str) -> str:
    return path.replace("{", "").replace("}", "")


def _role_of(dependant: Dependant) -> Any:
    """The role a route's dependencies require (rb_api.auth.require), or None."""
    for dep in dependant.dependencies:
        role = getattr(dep.call, "role", None)
        if role is not None:
            return role
        found = _role_of(dep)
        if found is not None:
            return found
    return None


def test_the_document_has_operations(document: dict[str, Any]) -> None:
    assert len(list(operations(document))) >= 40


def test_every_route_behind_credentials_declares_401(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document)
        if (needs_credentials(_concrete(path)) or path == GRAPHQL_PATH)
        and "401" not in operation["responses"]
    ]
    assert not missing, f"no 401 declared: {missing}"


def test_every_role_gated_route_declares_403(app: FastAPI, document: dict[str, Any]) -> None:
    gated = [
        (context, role)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute) and (role := _role_of(context.route.dependant)) is not None
    ]
    assert len(gated) >= 30
    missing = [
        f"{method} {context.path} ({role.value})"
        for context, role in gated
        for method in sorted(context.methods or ())
        if "403" not in document["paths"][context.path][method.lower()]["responses"]
    ]
    assert not missing, f"no 403 declared: {missing}"


def test_every_problem_is_problem_json_with_the_problem_schema(document: dict[str, Any]) -> None:
    wrong = []
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            if code[0] not in "45":
                continue
            media = response.get("content", {}).get(PROBLEM_JSON)
            if media is None or media.get("schema", {}).get("$ref") != PROBLEM_REF:
                wrong.append(f"{method.upper()} {path} {code}")
    assert not wrong, f"problems not declared as {PROBLEM_JSON} with the Problem schema: {wrong}"
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


def test_fastapi_validation_errors_are_not_what_the_document_promises(document: dict[str, Any]) -> None:
    text = str(document)
    assert "HTTPValidationError" not in text
    assert "500" not in {code for _, _, op in operations(document) for code in op["responses"]}


def test_the_middleware_statuses_are_declared_on_every_operation(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path} {code}"
        for method, path, operation in operations(document)
        for code in middleware_statuses(method, path, operation)
        if str(code) not in operation["responses"]
    ]
    assert not missing
    runbooks = document["paths"]["/api/v1/runbooks"]["post"]["responses"]
    assert {"400", "401", "403", "413", "415", "422", "503"} <= set(runbooks)
    assert "401" not in document["paths"]["/health/ready"]["get"]["responses"]
    assert "503" not in document["paths"]["/health/live"]["get"]["responses"]


def _enum(document: dict[str, Any], name: str) -> list[str]:
    return list(document["components"]["schemas"][name]["enum"])


STATUS_ENUMS = [
    value
    for value in vars(statuses).values()
    if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
]


@pytest.mark.parametrize("enum", STATUS_ENUMS, ids=lambda e: e.__name__)
def test_every_status_vocabulary_is_an_enum_of_the_document(
    document: dict[str, Any], enum: type[StrEnum]
) -> None:
    assert _enum(document, enum.__name__) == [member.value for member in enum]


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def _success_schema(document: dict[str, Any], method: str, path: str, code: str) -> dict[str, Any]:
    content = document["paths"][path][method]["responses"][code]["content"]["application/json"]
    ref = content["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _reachable(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The names of the component schemas `schema` refers to, transitively."""
    seen: set[str] = set()
    todo = list(_refs(schema))
    while todo:
        name = todo.pop().rsplit("/", 1)[1]
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(document["components"]["schemas"][name]))
    return seen


@pytest.mark.parametrize(
    ("method", "path", "code", "enums"),
    [
        ("get", "/api/v1/executions", "200", {"ExecutionStatus"}),
        ("get", "/api/v1/executions/{execution_id}", "200", {"ExecutionStatus", "StepStatus"}),
        ("get", "/api/v1/executions/{execution_id}/logs", "200", {"StepStatus"}),
        ("get", "/api/v1/executions/{execution_id}/events", "200", {"EventType"}),
    ],
)
def test_answers_carrying_statuses_declare_their_enums(
    document: dict[str, Any], method: str, path: str, code: str, enums: set[str]
) -> None:
    assert enums <= _reachable(document, _success_schema(document, method, path, code))


def test_the_event_types_are_an_enum_of_the_document(document: dict[str, Any]) -> None:
    assert _enum(document, "EventType") == [t.value for t in EventType]


Literals = Callable[[dict[str, Any]], list[str]]


@pytest.mark.parametrize(
    ("method", "path", "code", "field", "values"),
    [
        ("get", "/api/v1/runbooks/{runbook_id}", "200", "status", registry.STATUSES),
        ("post", "/api/v1/runbooks/{runbook_id}/approve", "200", "status", registry.STATUSES),
        ("post", "/api/v1/runbooks", "201", "status", registry.STATUSES),
        ("post", "/api/v1/runbooks/{runbook_id}/execute", "202", "status", ("QUEUED",)),
        ("post", "/api/v1/executions/{execution_id}/cancel", "202", "action", ("cancel", "pause", "resume")),
        ("post", "/api/v1/executions/{execution_id}/pause", "202", "status", ("ACCEPTED",)),
    ],
)
def test_the_other_vocabularies_are_enums_of_their_answers(
    document: dict[str, Any], method: str, path: str, code: str, field: str, values: tuple[str, ...]
) -> None:
    prop = _success_schema(document, method, path, code)["properties"][field]
    declared = prop.get("enum") or [prop["const"]]
    assert sorted(declared) == sorted(values)


def test_the_alert_statuses_are_an_enum_of_the_alerts_answer(document: dict[str, Any]) -> None:
    page = _success_schema(document, "get", "/api/v1/alerts", "200")
    record = document["components"]["schemas"][page["properties"]["items"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert sorted(record["properties"]["status"]["enum"]) == sorted(alert_records.STATUSES)
