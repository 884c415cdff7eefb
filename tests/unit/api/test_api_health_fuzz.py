"""Health, metrics, OpenAPI, and garbage thrown at every route: never a 500, always problem+json."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from rb_api.app import create_app
from rb_common.bus import Bus
from rb_common.memory_bus import memory_bus
from rb_common.settings import Settings
from rb_store.db import make_engine

PROBLEM = "application/problem+json"


async def test_live_ready_metrics_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert (r.status_code, r.json()) == (
        200,
        {"status": "ready", "checks": {"nats": "ok", "jetstream": "ok", "database": "ok"}},
    )
    await client.get("/api/v1/runbooks/whatever")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }
    get_404 = {"method": "GET", "route": "/api/v1/runbooks/{runbook_id}", "status": "404"}
    assert samples[("rb_api_requests_total", frozenset(get_404.items()))] == 1
    ready = {"method": "GET", "route": "/health/ready"}
    assert samples[("rb_api_request_duration_seconds_count", frozenset(ready.items()))] == 1
    assert samples[("rb_api_requests_in_flight", frozenset())] == 1  # the scrape itself
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/runbooks/{runbook_id}/execute" in spec["paths"]
    assert "/api/v1/executions/{execution_id}/stream" in spec["paths"]


async def test_not_ready_names_the_failed_checks(tmp_path: Path, bus: Bus) -> None:
    """Real broken dependencies: a PostgreSQL URL where nothing listens, a closed NATS connection."""
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    app: FastAPI = create_app(Settings(home=tmp_path), engine=engine, bus=bus)
    dead_db = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/nothing?connect_timeout=1")
    closed = memory_bus()
    await closed.close()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rb.test") as client,
    ):
        healthy = app.state.services
        app.state.services = dataclasses.replace(healthy, engine=dead_db)
        r = await client.get("/health/ready")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert [e["check"] for e in body["errors"]] == ["database"]
        assert body["checks"]["nats"] == "ok"
        assert "database" in body["detail"]

        app.state.services = dataclasses.replace(healthy, bus=closed)
        body = (await client.get("/health/ready")).json()
        assert (body["status"], [e["check"] for e in body["errors"]]) == (503, ["nats", "jetstream"])
        assert (await client.get("/health/live")).status_code == 200
        app.state.services = healthy
    dead_db.dispose()
    engine.dispose()


ROUTES = [
    ("POST", "/api/v1/runbooks"),
    ("GET", "/api/v1/runbooks"),
    ("GET", "/api/v1/runbooks/{rb}"),
    ("PUT", "/api/v1/runbooks/{rb}"),
    ("DELETE", "/api/v1/runbooks/{rb}"),
    ("GET", "/api/v1/runbooks/{rb}/versions"),
    ("GET", "/api/v1/runbooks/{rb}/versions/{rev}"),
    ("POST", "/api/v1/runbooks/{rb}/rollback"),
    ("POST", "/api/v1/runbooks/{rb}/approve"),
    ("POST", "/api/v1/runbooks/{rb}/deprecate"),
    ("POST", "/api/v1/runbooks/{rb}/execute"),
    ("GET", "/api/v1/executions"),
    ("GET", "/api/v1/executions/{ex}"),
    ("GET", "/api/v1/executions/{ex}/events"),
    ("GET", "/api/v1/executions/{ex}/logs"),
    ("GET", "/api/v1/executions/{ex}/stream"),
    ("POST", "/api/v1/executions/{ex}/cancel"),
    ("POST", "/api/v1/executions/{ex}/pause"),
    ("POST", "/api/v1/executions/{ex}/resume"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
]
PATH_VALUES = ["x", "%00", "a.b", "*", "%3E", "..", "%F0%9F%92%A5", "A" * 300, "-1", "99999999999999999999"]
BODIES: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b'{"params": null}', "application/json"),
    (b'{"params": {"a": 1e999}}', "application/json"),
    (b'{"revision": -5}', "application/json"),
    (b'{"revision": 1e30}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"id: [unclosed", "application/yaml"),
    (b"!!python/object:os.system ls", "application/yaml"),
    (b"a: &a [*a, *a]\nb: *a", "application/yaml"),
    (b"<xml/>", "application/xml"),
    (b"--boundary\r\n", "multipart/form-data; boundary=boundary"),
    (b"id: ok\nname: n\nsteps: 7", "text/plain"),
    (b'{"id": "Bad Id!", "name": 1, "steps": [{}]}', "application/json"),
]


async def test_garbage_never_gives_500(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    await client.post(
        "/api/v1/runbooks", content=make_yaml(runbook_id), headers={"content-type": "application/yaml"}
    )
    rng = random.Random(1234)
    seen = 0
    for (method, template), (body, ctype) in itertools.product(ROUTES, BODIES):
        value = rng.choice([*PATH_VALUES, runbook_id])
        path = template.format(rb=value, rev=rng.choice(["0", "1", "x", "-3", "2147483648"]), ex=value)
        if path.endswith("/stream") and value in ("x", "-1", runbook_id):
            path = path.replace(f"/{value}/", "/has.dot/")  # unknown but valid ids wait for events
        headers = {"content-type": ctype} if ctype else {}
        headers["Idempotency-Key"] = rng.choice(["k", "with space", "x" * 500])
        r = await client.request(method, path, content=body, headers=headers)
        assert r.status_code < 500, (method, path, body, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(PROBLEM), (method, path, r.text)
        seen += 1
    # Wrong methods and unknown paths too.
    for method, path in [
        ("PATCH", "/api/v1/runbooks"),
        ("DELETE", "/api/v1/executions"),
        ("GET", "/api/v2/x"),
    ]:
        r = await client.request(method, path)
        assert r.status_code in (404, 405)
        assert r.headers["content-type"].startswith(PROBLEM)
    assert seen == len(ROUTES) * len(BODIES)
