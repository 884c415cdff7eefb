"""Every route of the app, walked with no credentials, a wrong role and the right role.

`ACCESS` names what each (method, path) of `app.routes` needs; a route missing from the table
fails `test_every_route_is_in_the_table`, so a new route cannot ship without deciding its
access. REST routes (the SSE stream among them) answer 401 / 403 / success; GraphQL fields
(enumerated by introspection, each in `GRAPHQL_FIELDS`) answer errors with `extensions.code`
UNAUTHENTICATED / FORBIDDEN, HTTP 200 as GraphQL answers field errors.

The wrong role is the strongest one: every role that does not grant the needed one (for
`viewer`, an identity without any role).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_auth_support import ADMIN, ADMIN_KEY, bearer
from approval_support import Waiting, approval_yaml
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine

from rb_api.app import create_app
from rb_api.deps import ApiOptions
from rb_common.bus import Bus
from rb_common.identity import Role, granted
from rb_common.settings import Settings
from rb_engine.artifacts import FileArtifactStore
from rb_store.keys import create_key
from rb_store.recorder import Recorder

PUBLIC = "anonymous"  # /health/*, the API documentation
LINK = "link-authenticated"  # the execution page: its signed link, checked by the route (issue 13)
SENDER = "sender-authenticated"  # /api/v1/triggers/*: the sender's signature or token, not API keys
GRAPHQL = "graphql"  # each field checks its role: GRAPHQL_FIELDS
REFUSED = "refused"  # websockets: the API has none
CONSOLE = "console file"  # the web console's build (rb_api.console): anonymous, 404 when not built
MASTER_KEY = Fernet.generate_key().decode()
SECRET = "RB_ACL_SECRET"

RB = "/api/v1/runbooks"
EX = "/api/v1/executions"

ACCESS: dict[tuple[str, str], Role | str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/metrics"): Role.VIEWER,
    ("POST", RB): Role.AUTHOR,
    ("GET", RB): Role.VIEWER,
    ("GET", RB + "/{runbook_id}"): Role.VIEWER,
    ("PUT", RB + "/{runbook_id}"): Role.AUTHOR,
    ("DELETE", RB + "/{runbook_id}"): Role.AUTHOR,
    ("GET", RB + "/{runbook_id}/versions"): Role.VIEWER,
    ("GET", RB + "/{runbook_id}/versions/{revision}"): Role.VIEWER,
    ("POST", RB + "/{runbook_id}/rollback"): Role.AUTHOR,
    ("POST", RB + "/{runbook_id}/approve"): Role.ADMIN,
    ("POST", RB + "/{runbook_id}/deprecate"): Role.ADMIN,
    ("POST", RB + "/{runbook_id}/execute"): Role.OPERATOR,
    ("GET", EX): Role.VIEWER,
    ("GET", EX + "/{execution_id}"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/events"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/logs"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/stream"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/audit"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/notifications"): Role.VIEWER,
    ("GET", EX + "/{execution_id}/page"): LINK,
    ("POST", EX + "/{execution_id}/cancel"): Role.OPERATOR,
    ("POST", EX + "/{execution_id}/pause"): Role.OPERATOR,
    ("POST", EX + "/{execution_id}/resume"): Role.OPERATOR,
    ("POST", EX + "/{execution_id}/replay"): Role.OPERATOR,
    ("GET", "/api/v1/schedules"): Role.VIEWER,
    ("POST", "/api/v1/schedules/{runbook_id}/{index}/pause"): Role.OPERATOR,
    ("POST", "/api/v1/schedules/{runbook_id}/{index}/resume"): Role.OPERATOR,
    ("GET", "/api/v1/alerts"): Role.VIEWER,
    ("POST", "/api/v1/keys"): Role.ADMIN,
    ("GET", "/api/v1/keys"): Role.ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): Role.ADMIN,
    ("PUT", "/api/v1/secrets/{name}"): Role.ADMIN,
    ("GET", "/api/v1/secrets"): Role.ADMIN,
    ("DELETE", "/api/v1/secrets/{name}"): Role.ADMIN,
    ("GET", "/graphql"): GRAPHQL,
    ("POST", "/graphql"): GRAPHQL,
    ("WEBSOCKET", "/graphql"): REFUSED,
    ("POST", "/api/v1/triggers/alertmanager"): SENDER,
    ("POST", "/api/v1/triggers/grafana"): SENDER,
    ("POST", "/api/v1/triggers/pagerduty"): SENDER,
    ("POST", "/api/v1/triggers/cloudevents"): SENDER,
    ("POST", "/api/v1/triggers/webhook/{runbook_id}"): SENDER,
    ("POST", "/api/v1/slack/interactivity"): SENDER,
    ("GET", "/api/v1/approvals/{approval_id}/email"): LINK,  # its signed link (rb_common.approval_links)
    ("POST", "/api/v1/approvals/{approval_id}/email"): LINK,  # Slack's signature (rb_api.slack_actions)
    ("GET", "/api/v1/approvals"): Role.VIEWER,
    ("GET", "/api/v1/approvals/{approval_id}"): Role.VIEWER,
    ("POST", "/api/v1/approvals/{approval_id}/approve"): Role.APPROVER,
    ("POST", "/api/v1/approvals/{approval_id}/reject"): Role.APPROVER,
    ("POST", EX + "/{execution_id}/steps/{step_id}/retry"): Role.OPERATOR,
    ("POST", "/api/v1/events"): Role.OPERATOR,
    ("GET", "/api/v1/artifacts/{digest}"): Role.VIEWER,  # and the team scope of its execution
    ("GET", "/"): PUBLIC,  # the web console's page (or how to build it)
    ("GET", "/favicon.svg"): CONSOLE,
    ("GET", "/assets/{name}"): CONSOLE,
    ("GET", "/console/identity"): Role.VIEWER,
    ("GET", "/api/v1/schema/runbook"): Role.VIEWER,
    ("POST", "/api/v1/authoring/validate"): Role.VIEWER,  # touches nothing
    ("POST", "/api/v1/authoring/edit"): Role.VIEWER,  # a text in, a text out
    ("POST", "/api/v1/authoring/dry-run"): Role.VIEWER,  # the plan; nothing runs
}

GRAPHQL_FIELDS: dict[tuple[str, str], Role] = {
    ("query", "runbook"): Role.VIEWER,
    ("query", "runbookExecution"): Role.VIEWER,
    ("mutation", "executeRunbook"): Role.OPERATOR,
    ("mutation", "replayExecution"): Role.OPERATOR,
}


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        methods = route.methods
        if methods is None:  # a websocket route
            found.add(("WEBSOCKET", str(route.path)))
            continue
        found |= {(m, str(route.path)) for m in methods if m != "HEAD"}
    return found


def wrong_roles(role: Role) -> list[str]:
    """Every role that does not grant `role` (none at all for viewer)."""
    return [r.value for r in Role if role not in granted({r})]


def _app(tmp_path: Path, engine: Engine, bus: Bus, options: ApiOptions) -> FastAPI:
    settings = Settings(
        home=tmp_path / ".rb",
        nats_url="nats://memory.invalid:4222",
        bootstrap_admin_key=ADMIN_KEY,
        master_key=MASTER_KEY,
    )
    return create_app(settings, engine=engine, bus=bus, options=options)


def test_every_route_is_in_the_table(tmp_path: Path, engine: Engine) -> None:
    from rb_common.memory_bus import memory_bus

    app = _app(tmp_path, engine, memory_bus(), ApiOptions())
    routes = _routes(app)
    assert routes - set(ACCESS) == set(), "new routes: decide their access in ACCESS"
    assert set(ACCESS) - routes <= UPCOMING, "routes gone: drop them from ACCESS"


# Entries for routes being built beside this table (their tests skip until they exist).
UPCOMING: set[tuple[str, str]] = set()


def test_the_openapi_document_declares_401_and_403(tmp_path: Path, engine: Engine) -> None:
    from rb_common.memory_bus import memory_bus

    spec = _app(tmp_path, engine, memory_bus(), ApiOptions()).openapi()
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if isinstance(ACCESS.get((method.upper(), path)), Role):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
                checked += 1
    assert checked == sum(isinstance(v, Role) for v in ACCESS.values())
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@dataclass
class World:
    """One app with a registered, approved runbook (with a cron trigger), a finished and a
    running execution of it, and a spare key."""

    app: FastAPI
    client: httpx.AsyncClient
    engine: Engine
    runbook_id: str
    done: str  # a finished execution
    running: str  # one still running
    spare_key_id: str
    make_yaml: Callable[..., str]
    done_events: list[Any]
    approval: str = ""  # a pending approval (any approver may decide it)
    failed: str = ""  # a FAILED execution (its step 'second' failed): retried by the retry route
    artifact: str = ""  # a blob the finished execution recorded

    def key(self, *roles: str, teams: tuple[str, ...] = ()) -> dict[str, str]:
        _, key = create_key(
            self.engine, name=f"t-{'-'.join(roles) or 'none'}", roles=roles, teams=teams, created_by="test"
        )
        return bearer(key)


@pytest.fixture
async def world(
    tmp_path: Path,
    engine: Engine,
    bus: Bus,
    api_options: ApiOptions,
    make_yaml: Callable[..., str],
    executions: Any,
) -> AsyncIterator[World]:
    app = _app(tmp_path, engine, bus, api_options)
    runbook_id = f"t-acl-{uuid.uuid4().hex[:8]}"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://rb.test", timeout=20
        ) as client,
    ):
        text = make_yaml(runbook_id, extra="triggers:\n  - cron: '0 3 * * *'\n")
        created = await client.post(RB, content=text, headers={**ADMIN, "content-type": "application/yaml"})
        assert created.status_code == 201, created.text
        _, second_admin = create_key(engine, name="second-admin", roles=["admin"], created_by="test")
        approved = await client.post(f"{RB}/{runbook_id}/approve", headers=bearer(second_admin))
        assert approved.status_code == 200, approved.text  # four eyes: not by its author
        done = await executions.run(runbook_id)
        await executions.publish(done)
        running = await executions.run(runbook_id)
        started = next(i for i, e in enumerate(running) if e.type == "step.started")
        await executions.publish(running[: started + 1])
        failed = await executions.run(runbook_id, params={"region": "eu", "batch_size": None})
        await executions.publish(failed)
        spare, _ = create_key(engine, name="spare", roles=["viewer"], created_by="test")
        if ("PUT", "/api/v1/secrets/{name}") in _routes(app):
            stored = await client.put(f"/api/v1/secrets/{SECRET}", json={"value": "v4lue"}, headers=ADMIN)
            assert stored.status_code == 201, stored.text
        artifacts = FileArtifactStore(tmp_path / ".rb" / "artifacts")
        artifact = artifacts.put(b"\x89PNG\r\n\x1a\n not really an image")
        artifacts.link(artifact, done[0].execution_id)
        waiting = Waiting(
            engine, approval_yaml(f"t-acl-gate-{uuid.uuid4().hex[:6]}", "['role:approver']"), "k"
        )
        yield World(
            app,
            client,
            engine,
            runbook_id,
            done[0].execution_id,
            running[0].execution_id,
            spare.id,
            make_yaml,
            done,
            waiting.approval_id,
            failed[0].execution_id,
            artifact,
        )


def _request(w: World, method: str, template: str) -> tuple[str, dict[str, Any]]:
    """A request that succeeds for the right role."""
    path = template.format(
        runbook_id=w.runbook_id,
        revision=1,
        execution_id=w.running
        if template.endswith(("cancel", "pause", "resume"))
        else w.failed
        if template.endswith("/retry")
        else w.done,
        step_id="second",
        index=0,
        key_id=w.spare_key_id,
        name=SECRET,
        approval_id=w.approval,
        digest=w.artifact,
    )
    yaml = {"content-type": "application/yaml"}
    if (method, template) == ("POST", RB):
        return path, {"content": w.make_yaml(f"t-acl-new-{uuid.uuid4().hex[:6]}"), "headers": yaml}
    if (method, template) == ("PUT", RB + "/{runbook_id}"):
        revised = w.make_yaml(w.runbook_id).replace("version: 1.0.0", "version: 1.1.0")
        return path, {"content": revised, "headers": yaml}
    if template.startswith("/api/v1/approvals/") and method == "POST":
        return path, {"json": {"comment": "checked"}}
    if template == "/api/v1/events":
        return path, {"json": {"subject": "deploy.finished", "correlation": "CHG-1", "data": {"ok": True}}}
    if template.endswith("/rollback"):
        return path, {"json": {"revision": 1}}
    if template.startswith("/api/v1/authoring/"):
        text = w.make_yaml(w.runbook_id)
        edit = {"op": "set_input", "id": "first", "key": "note", "value": "hi"}
        extra = {"edit": edit} if template.endswith("/edit") else {}
        if template.endswith("/dry-run"):
            extra = {"params": {"region": "eu"}}
        return path, {"json": {"yaml": text, **extra}}
    if template.endswith("/execute"):
        return path, {"json": {"params": {"region": "eu"}}}
    if template == "/api/v1/keys" and method == "POST":
        return path, {"json": {"name": "made", "roles": ["viewer"]}}
    if template.startswith("/api/v1/secrets/") and method == "PUT":
        return path, {"json": {"value": "an0ther-value"}}
    return path, {}


def _success(method: str, template: str, response: httpx.Response) -> None:
    assert response.status_code not in (401, 403), (method, template, response.text)
    assert response.status_code < 400, (method, template, response.status_code, response.text)


REST = sorted((k, v) for k, v in ACCESS.items() if isinstance(v, Role))


@pytest.mark.parametrize(("route", "role"), REST, ids=[f"{m} {p}" for (m, p), _ in REST])
async def test_rest_route(world: World, route: tuple[str, str], role: Role) -> None:
    method, template = route
    if route in UPCOMING and route not in _routes(world.app):
        pytest.skip("the route is not in this build yet")
    path, kwargs = _request(world, method, template)
    client = world.client

    anonymous = await client.request(method, path, **kwargs)
    assert anonymous.status_code == 401, (method, template, anonymous.text)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.headers["content-type"].startswith("application/problem+json")

    invalid = await client.request(method, path, **_with(kwargs, bearer("rbk_not-a-key")))
    assert invalid.status_code == 401 and 'error="invalid_token"' in invalid.headers["www-authenticate"]

    wrong = await client.request(method, path, **_with(kwargs, world.key(*wrong_roles(role))))
    assert wrong.status_code == 403, (method, template, wrong.text)
    assert wrong.headers["content-type"].startswith("application/problem+json")

    right = await client.request(method, path, **_with(kwargs, world.key(role.value)))
    _success(method, template, right)


def _with(kwargs: dict[str, Any], auth: dict[str, str]) -> dict[str, Any]:
    return {**kwargs, "headers": {**kwargs.get("headers", {}), **auth}}


@pytest.mark.parametrize("route", sorted(k for k, v in ACCESS.items() if v == PUBLIC))
async def test_public_routes_need_no_credentials(world: World, route: tuple[str, str]) -> None:
    method, path = route
    r = await world.client.request(method, path, params={"state": "x"} if "oauth2" in path else None)
    assert r.status_code == 200, (route, r.text)


async def test_console_files_need_no_credentials(world: World) -> None:
    """The console's files answer without credentials: the file, or a 404 problem without a build."""
    for (method, template), kind in ACCESS.items():
        if kind != CONSOLE:
            continue
        r = await world.client.request(method, template.format(name="index-none.js"))
        assert r.status_code in (200, 404) and "www-authenticate" not in r.headers, (template, r.text)


async def test_sender_authenticated_routes_do_not_read_api_keys(world: World) -> None:
    """Trigger endpoints never answer 401 for a missing API key (their senders authenticate
    otherwise); an invalid bearer is not an API-key failure there either."""
    for (_, template), kind in ACCESS.items():
        if kind != SENDER:
            continue
        path = template.format(runbook_id=world.runbook_id)
        for headers in ({}, bearer("rbk_not-a-key")):
            r = await world.client.post(
                path, content=b"{", headers={**headers, "content-type": "application/json"}
            )
            assert r.status_code != 403 and "invalid_token" not in r.headers.get("www-authenticate", ""), (
                path,
                r.text,
            )


async def test_websockets_are_refused(world: World) -> None:
    app = world.client._transport.app  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {ADMIN_KEY}".encode())],
        "subprotocols": ["graphql-transport-ws"],
        "scheme": "ws",
        "server": ("rb.test", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "app": app,
    }
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]


# -- GraphQL --------------------------------------------------------------------------------------


def _field_query(w: World, kind: str, name: str) -> str:
    if name == "runbook":
        return f'query {{ runbook(id: "{w.runbook_id}") {{ id status }} }}'
    if name == "runbookExecution":
        return f'query {{ runbookExecution(id: "{w.done}") {{ id status }} }}'
    if name == "executeRunbook":
        return (
            f'mutation {{ executeRunbook(id: "{w.runbook_id}", params: {{region: "eu"}}) {{ executionId }} }}'
        )
    if name == "replayExecution":
        return f'mutation {{ replayExecution(id: "{w.done}") {{ verified }} }}'
    raise AssertionError(f"no query for {kind} {name}")


async def test_every_graphql_field_is_in_the_table(world: World) -> None:
    r = await world.client.post(
        "/graphql",
        json={"query": "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }"},
    )
    schema = r.json()["data"]["__schema"]
    fields = {("query", f["name"]) for f in schema["queryType"]["fields"]}
    fields |= {("mutation", f["name"]) for f in schema["mutationType"]["fields"]}
    assert fields == set(GRAPHQL_FIELDS)


def _codes(response: httpx.Response) -> list[str | None]:
    assert response.status_code == 200, response.text
    return [(e.get("extensions") or {}).get("code") for e in response.json().get("errors") or []]


@pytest.mark.parametrize(("field", "role"), sorted(GRAPHQL_FIELDS.items()), ids=lambda v: str(v))
async def test_graphql_field(world: World, field: tuple[str, str], role: Role) -> None:
    query = _field_query(world, *field)
    post = world.client.post
    assert _codes(await post("/graphql", json={"query": query})) == ["UNAUTHENTICATED"]
    assert (await post("/graphql", json={"query": query}, headers=bearer("rbk_nope"))).status_code == 401
    wrong = await post("/graphql", json={"query": query}, headers=world.key(*wrong_roles(role)))
    assert _codes(wrong) == ["FORBIDDEN"]
    right = await post("/graphql", json={"query": query}, headers=world.key(role.value))
    assert _codes(right) == [], right.text
    data = right.json()["data"]
    assert all(value is not None for value in data.values()), data
    if field[0] == "query":  # queries over GET too
        got = await world.client.get("/graphql", params={"query": query}, headers=world.key(role.value))
        assert _codes(got) == [] and got.json()["data"] == data
        assert _codes(await world.client.get("/graphql", params={"query": query})) == ["UNAUTHENTICATED"]


# -- team scope -----------------------------------------------------------------------------------


async def test_team_scope_members_see_and_run_others_get_404(world: World, executions: Any) -> None:
    client, make_yaml = world.client, world.make_yaml
    scoped = f"t-team-{uuid.uuid4().hex[:8]}"
    text = make_yaml(scoped, extra="team: payments\n")
    yaml = {"content-type": "application/yaml"}
    outsider_author = world.key("author", teams=("search",))
    refused = await client.post(RB, content=text, headers={**yaml, **outsider_author})
    assert refused.status_code == 403, "an author cannot scope a runbook to a team they are not in"
    member_author = world.key("author", teams=("payments",))
    assert (await client.post(RB, content=text, headers={**yaml, **member_author})).status_code == 201
    run = await executions.run(scoped)
    await executions.publish(run)
    execution_id = run[0].execution_id

    member = world.key("operator", teams=("payments",))
    outsider = world.key("operator", teams=("search",))
    nobody = world.key("operator")
    # Not yet projected: executions are read from their JetStream subject.
    for other in (outsider, nobody):
        assert (await client.get(f"{EX}/{execution_id}", headers=other)).status_code == 404
        assert (await client.get(f"{EX}/{execution_id}/stream", headers=other)).status_code == 404
    assert (await client.get(f"{EX}/{execution_id}", headers=member)).status_code == 200
    recorder = Recorder(world.engine)
    for event in [*run, *world.done_events]:
        recorder.apply(event)

    listed = (await client.get(RB, params={"limit": 500}, headers=member)).json()
    assert scoped in [i["id"] for i in listed["items"]]
    assert (await client.get(f"{RB}/{scoped}", headers=member)).json()["team"] == "payments"
    assert (await client.post(f"{RB}/{scoped}/approve", headers=ADMIN)).status_code == 200  # not its author
    r = await client.post(f"{RB}/{scoped}/execute", json={"params": {"region": "eu"}}, headers=member)
    assert r.status_code == 202, r.text
    assert (await client.get(f"{EX}/{execution_id}", headers=member)).status_code == 200
    assert execution_id in [i["id"] for i in (await client.get(EX, headers=member)).json()["items"]]
    # Admins see every team.
    assert (await client.get(f"{RB}/{scoped}", headers=ADMIN)).status_code == 200

    for other in (outsider, nobody):
        listed = (await client.get(RB, params={"limit": 500}, headers=other)).json()
        assert scoped not in [i["id"] for i in listed["items"]]
        assert listed["total"] == len(listed["items"])
        assert world.runbook_id in [i["id"] for i in listed["items"]], "unscoped runbooks stay visible"
        for method, path, body in [
            ("GET", f"{RB}/{scoped}", None),
            ("GET", f"{RB}/{scoped}/versions", None),
            ("GET", f"{RB}/{scoped}/versions/1", None),
            ("POST", f"{RB}/{scoped}/execute", {"params": {"region": "eu"}}),
            ("GET", f"{EX}/{execution_id}", None),
            ("GET", f"{EX}/{execution_id}/events", None),
            ("GET", f"{EX}/{execution_id}/logs", None),
            ("GET", f"{EX}/{execution_id}/audit", None),
            ("GET", f"{EX}/{execution_id}/stream", None),
            ("POST", f"{EX}/{execution_id}/replay", None),
            ("POST", f"{EX}/{execution_id}/cancel", None),
        ]:
            r = await client.request(method, path, json=body, headers=other)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
        listed_ex = (await client.get(EX, params={"limit": 500}, headers=other)).json()["items"]
        assert execution_id not in [i["id"] for i in listed_ex]
        assert world.done in [i["id"] for i in listed_ex]
        q = f'query {{ runbook(id: "{scoped}") {{ id }} runbookExecution(id: "{execution_id}") {{ id }} }}'
        answer = (await client.post("/graphql", json={"query": q}, headers=other)).json()
        assert answer["data"] == {"runbook": None, "runbookExecution": None}
        m = f'mutation {{ executeRunbook(id: "{scoped}", params: {{region: "eu"}}) {{ executionId }} }}'
        answer = (await client.post("/graphql", json={"query": m}, headers=other)).json()
        assert answer["errors"][0]["message"].startswith("404")


# -- browser safety -------------------------------------------------------------------------------


async def test_mutating_routes_take_only_their_content_types(world: World) -> None:
    client, rid = world.client, world.runbook_id
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        for path in (RB, f"{RB}/{rid}/execute", f"{RB}/{rid}/rollback", "/api/v1/keys", "/graphql"):
            r = await client.post(path, content=b'{"a": 1}', headers={**ADMIN, "content-type": content_type})
            assert r.status_code == 415, (path, content_type, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await client.put(f"{RB}/{rid}", content=b"id: x", headers={**ADMIN, "content-type": content_type})
        assert r.status_code == 415
    no_type = await client.post(f"{RB}/{rid}/execute", content=b'{"params": {"region": "eu"}}', headers=ADMIN)
    assert no_type.status_code == 415
    # Bodiless commands need no content type.
    assert (await client.post(f"{RB}/{rid}/approve", headers=ADMIN)).status_code == 200
    ok = await client.post(
        f"{RB}/{rid}/execute",
        content=json.dumps({"params": {"region": "eu"}}),
        headers={**ADMIN, "content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 202


async def test_no_cors_unless_origins_are_configured(
    world: World, tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    r = await world.client.options(f"{RB}/{world.runbook_id}/execute", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = await world.client.get(RB, headers={**ADMIN, "Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "set-cookie" not in r.headers

    settings = Settings(
        home=tmp_path / ".rb2",
        nats_url="nats://memory.invalid:4222",
        bootstrap_admin_key=ADMIN_KEY,
        cors_origins="https://console.example, https://other.example",
    )
    app = create_app(settings, engine=engine, bus=bus, options=api_options)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rb.test") as client,
    ):
        good = await client.options(RB, headers={**preflight, "Origin": "https://console.example"})
        assert good.status_code == 200
        assert good.headers["access-control-allow-origin"] == "https://console.example"
        assert "access-control-allow-credentials" not in good.headers
        evil = await client.options(RB, headers=preflight)
        assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
        simple = await client.get(RB, headers={**ADMIN, "Origin": "https://console.example"})
        assert simple.headers["access-control-allow-origin"] == "https://console.example"


async def test_the_execution_page_opens_with_its_signed_link_and_nothing_else(world: World) -> None:
    """Issue 13: a link from a message opens the execution's page without an API key; the
    signature binds the execution and the expiry, and an expired or altered link is refused."""
    from rb_common.links import link_keys, signed_path

    settings = Settings(master_key=MASTER_KEY)
    [key] = link_keys(settings)
    good = signed_path(world.done, key, 600)
    page = await world.client.get(good)  # no Authorization header
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "no-store" in page.headers["cache-control"]
    body = page.text
    assert world.runbook_id in body and "SUCCEEDED" in body and world.done in body
    for event in world.done_events:  # step ids shown; no raw results or outputs
        if event.type == "step.succeeded":
            assert event.data["step_id"] in body
            assert json.dumps(event.data["result"]) not in body
    refusals = [
        good[:-1] + ("0" if good[-1] != "0" else "1"),  # altered signature
        signed_path(world.done, key, -5),  # expired
        good.replace(world.done, world.running),  # another execution, same signature
        signed_path(world.done, b"another key", 600),
    ]
    for link in refusals:
        r = await world.client.get(link)
        assert r.status_code == 403, (link, r.text)
    assert (await world.client.get(f"{EX}/{world.done}/page")).status_code == 422
    # Only the page: the same signature opens no other route.
    query = good.split("?", 1)[1]
    assert (await world.client.get(f"{EX}/{world.done}?{query}")).status_code == 401


def test_notifications_show_each_attempts_outcome() -> None:
    from rb_api.notifications import notifications

    def ev(type_: str, **data: Any) -> dict[str, Any]:
        return {"type": f"notification.{type_}", "data": {"event_id": "e1", "channel": "slack:#ops", **data}}

    items = notifications(
        [
            {"type": "step.started", "data": {}},
            ev("sending", attempts=1, at="t1", deadline="d"),
            ev(
                "retrying",
                attempts=1,
                error="Slack API error ratelimited (HTTP 429)",
                retry_at="t2",
                retry_after=30.0,
            ),
            ev("sending", attempts=2, at="t2"),
            ev("sent", attempts=2, ts="1700.1", found=True),
            {
                "type": "notification.sending",
                "data": {"event_id": "e1", "channel": "email:a@b", "attempts": 1, "at": "t1"},
            },
            {
                "type": "notification.failed",
                "data": {
                    "event_id": "e1",
                    "channel": "email:a@b",
                    "attempts": 1,
                    "permanent": True,
                    "error": "550",
                },
            },
        ]
    )
    slack, email = items
    assert slack["status"] == "sent" and slack["ts"] == "1700.1" and slack["deadline"] == "d"
    assert [(a["attempt"], a["outcome"]) for a in slack["attempts"]] == [
        (1, "failed"),
        (2, "found already sent"),
    ]
    assert slack["attempts"][0]["retry_after"] == 30.0 and slack["attempts"][0]["retry_at"] == "t2"
    assert email["status"] == "failed" and email["permanent"] and email["attempts"][0]["outcome"] == "refused"
