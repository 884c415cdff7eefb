"""Prometheus metrics of every service, scraped after real runs: the API on `/metrics` (a viewer
key), the others on their RB_HEALTH_ADDR. The counters move by exactly what the runs did, and
the executor's admission metrics by exactly what admission did."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from services_support import Services, api, publish_trigger, wait_terminal
from test_admission_live import gated_runbook, queued, started
from test_alert_routing import publish, register
from test_stack_e2e import Stack, free_port

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration

SERVICES = ("recorder", "executor", "scheduler", "notifier", "api")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def runbook_yaml(runbook_id: str, hook: str) -> str:
    """Three worker steps (two transforms, one shell), a wait on the coordinator's timer, a
    webhook notification on success, and an alert trigger."""
    return f"""
id: {runbook_id}
name: Metrics
legal_basis: "tests"
triggers:
  - alert: {{source: webhook, match: {{alertname: MetricsProbe}}}}
    params: {{n: 3}}
parameters:
  type: object
  properties: {{n: {{type: integer, default: 2}}}}
notify:
  - on: [succeeded]
    webhook: {{url: "{hook}"}}
steps:
  - {{id: a, type: transform, inputs: {{n: "${{params.n}}"}}, outputs: {{n: $.n}}}}
  - {{id: b, type: shell, depends_on: [a], inputs: {{command: [echo, "n=${{steps.a.outputs.n}}"]}}}}
  - {{id: c, type: wait, depends_on: [a], inputs: {{seconds: 0.1}}}}
  - {{id: d, type: transform, depends_on: [b, c], inputs: {{n: "${{steps.a.outputs.n}}"}}}}
"""


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        Hook.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url, headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_every_service_counts_exactly_what_the_runs_did(
    services: Services, postgres_database: str, hook: str, tmp_path: Path, bus: Bus
) -> None:
    stack = Stack(services, postgres_database)
    ports = {name: free_port() for name in SERVICES if name != "api"}
    for name in SERVICES:
        extra = {"RB_HEALTH_ADDR": f"127.0.0.1:{ports[name]}"} if name in ports else {}
        if name == "notifier":
            extra["RB_EGRESS_ALLOW"] = "127.0.0.1/32"  # the test's webhook receiver
        services.start(name, **extra)
    stack.wait_ready()
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    api_metrics = f"http://127.0.0.1:{stack.port}/metrics"

    # The API's /metrics needs a key (viewer or above); the probes' port needs none.
    assert httpx.get(api_metrics, timeout=10).status_code == 401
    deadline = time.monotonic() + 30
    while True:
        try:
            before = {name: scrape(url) for name, url in urls.items()}
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, services.logs()
            await asyncio.sleep(0.2)

    runbook_id = f"metrics-{uuid.uuid4().hex[:8]}"
    register(stack, runbook_yaml(runbook_id, hook))
    response = stack.execute(runbook_id, json={"params": {"n": 7}})
    assert response.status_code == 202, response.text
    await stack.wait_recorded(response.json()["execution_id"])
    alert = {"source": "webhook", "runbook_id": runbook_id, "name": "MetricsProbe"}
    publish(
        services.env,
        tmp_path,
        {**alert, "dedupe_id": uuid.uuid4().hex, "labels": {"alertname": "MetricsProbe"}},
    )
    publish(
        services.env, tmp_path, {**alert, "dedupe_id": uuid.uuid4().hex, "labels": {"alertname": "Other"}}
    )

    def finished() -> bool:
        items = api.get(f"{stack.base}/executions", params={"runbook_id": runbook_id}).json()["items"]
        return len(items) == 2 and {i["status"] for i in items} == {"SUCCEEDED"}

    await wait_until(finished, 60, "two SUCCEEDED executions")
    await wait_until(lambda: len(Hook.received) >= 2, 30, "two webhook notifications")

    def stored() -> int:
        """This test's events (the session's database holds other tests' too)."""
        sql = (
            "SELECT count(*) AS n FROM events e JOIN runbook_executions r ON r.id = e.execution_id"
            " WHERE r.runbook_id = :r"
        )
        return int(stack.rows(sql, r=runbook_id)[0].n)

    def recorded() -> float:
        applied = value(scrape(urls["recorder"]), "rb_recorder_events_total", result="applied")
        return applied - value(before["recorder"], "rb_recorder_events_total", result="applied")

    # The notifier's records (notification.sending/sent) come after the terminal event.
    await wait_until(
        lambda: stored() == recorded(),
        30,
        "the recorder's count to match the events stored",
    )
    after = {name: scrape(url) for name, url in urls.items()}
    moved = lambda service, name, **labels: (  # noqa: E731
        value(after[service], name, **labels) - value(before[service], name, **labels)
    )

    # Executor: two executions, each three worker steps (two transforms and a shell; the wait
    # step is the coordinator's timer), a decision per event at least.
    assert moved("executor", "rb_executions_started_total", runbook=runbook_id) == 2
    assert moved("executor", "rb_executions_finished_total", runbook=runbook_id, status="SUCCEEDED") == 2
    assert moved("executor", "rb_executions_finished_total", runbook=runbook_id) == 2
    assert moved("executor", "rb_step_duration_seconds_count", type="transform", outcome="succeeded") == 4
    assert moved("executor", "rb_step_duration_seconds_count", type="shell", outcome="succeeded") == 2
    assert moved("executor", "rb_step_duration_seconds_count") == 6
    assert moved("executor", "rb_step_duration_seconds_count", outcome="failed") == 0
    assert moved("executor", "rb_task_queue_wait_seconds_count") == 6
    assert moved("executor", "rb_coordinator_decision_seconds_count") >= 2 * 6
    assert ("rb_task_queue_depth", frozenset({("type", "shell")})) in after["executor"]
    # Recorder: every stored event, once, with its lag.
    events = stored()
    assert moved("recorder", "rb_recorder_events_total") == events
    assert moved("recorder", "rb_recorder_lag_seconds_count") == events
    # Scheduler: two alerts received, one matched (an execution), none a duplicate.
    assert moved("scheduler", "rb_alerts_received_total", source="webhook") == 2
    assert moved("scheduler", "rb_alerts_matched_total", runbook=runbook_id) == 1
    assert moved("scheduler", "rb_alerts_deduplicated_total") == 0
    assert moved("scheduler", "rb_cron_fires_total") == 0
    # Notifier: one webhook per SUCCEEDED execution, sent at the first attempt.
    assert moved("notifier", "rb_notifier_deliveries_total", channel="webhook", outcome="sent") == 2
    assert moved("notifier", "rb_notifier_deliveries_total") == 2
    assert moved("notifier", "rb_notifier_retries_total") == 0
    # Nothing was delivered twice anywhere.
    for service in ("executor", "recorder", "notifier"):
        assert moved(service, "rb_redeliveries_total") == 0, service

    # The API: its request counters, and the same registry format, behind a viewer key.
    viewer = api.post(f"{stack.base}/keys", json={"name": "prometheus", "roles": ["viewer"]}).json()["key"]
    scraped = scrape(api_metrics, {"Authorization": f"Bearer {viewer}"})
    assert (
        value(scraped, "rb_api_requests_total", route="/api/v1/runbooks/{runbook_id}/execute", status="202")
        == 1
    )
    assert value(scraped, "process_cpu_seconds_total") > 0


async def scrape_when_up(url: str, services: Services) -> Samples:
    deadline = time.monotonic() + 30
    while True:
        try:
            return scrape(url)
        except httpx.HTTPError:
            assert time.monotonic() < deadline, services.logs()
            await asyncio.sleep(0.2)


async def test_admission_metrics_move_by_exactly_what_admission_did(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    """A runbook with concurrency limit 1 triggered twice (one runs, one waits QUEUED, its wait
    observed once when it starts), one with `on_limit: reject` (one refused) and a trigger of a
    revision nobody approved (refused): the executor's admission metrics say exactly that."""
    port = free_port()
    services.start("executor", RB_HEALTH_ADDR=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    before = await scrape_when_up(url, services)
    suffix = uuid.uuid4().hex[:6]
    limited = gated_runbook(f"adm-queue-{suffix}", step_dir, "concurrency: {limit: 1}\n")
    rejecting = gated_runbook(f"adm-reject-{suffix}", step_dir, "concurrency: {limit: 1, on_limit: reject}\n")
    draft = gated_runbook(f"adm-draft-{suffix}", step_dir)

    first = await publish_trigger(bus, limited, params={"n": "first"})
    await started(bus, first)
    second = await publish_trigger(bus, limited, params={"n": "second"})
    await queued(bus, second)
    kept = await publish_trigger(bus, rejecting, params={"n": "kept"})
    await started(bus, kept)
    refused = await publish_trigger(bus, rejecting, params={"n": "refused"})
    unapproved = await publish_trigger(bus, draft, approve=False, params={"n": "draft"})
    for execution_id in (refused, unapproved):
        assert fold(await wait_terminal(bus, execution_id, 60)).status == "ABORTED"

    def now(name: str, **labels: str) -> float:
        return value(scrape(url), name, **labels)

    def moved(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    # Two executions hold a slot, one waits; the table is the executor's last read or write.
    await wait_until(
        lambda: (now("rb_admission_running_executions"), now("rb_admission_queued_executions")) == (2, 1),
        30,
        "2 running and 1 queued",
    )
    during = scrape(url)
    assert (
        moved(during, "rb_admission_refused_total", runbook=f"adm-reject-{suffix}", reason="runbook_limit")
        == 1
    )
    assert (
        moved(during, "rb_admission_refused_total", runbook=f"adm-draft-{suffix}", reason="not_approved") == 1
    )
    assert moved(during, "rb_admission_refused_total") == 2
    assert moved(during, "rb_admission_queue_wait_seconds_count") == 0  # still waiting

    for name in ("first", "second", "kept"):
        (step_dir / name).touch()
    for execution_id in (first, second, kept):
        assert fold(await wait_terminal(bus, execution_id, 60)).status == "SUCCEEDED", services.logs()
    await wait_until(
        lambda: (now("rb_admission_running_executions"), now("rb_admission_queued_executions")) == (0, 0),
        30,
        "every slot released",
    )
    after = scrape(url)
    # The one that waited is observed once, for exactly its wait: requested -> dequeued.
    events = await wait_terminal(bus, second, 60)
    requested = next(e.time for e in events if e.type == EventType.EXECUTION_REQUESTED)
    dequeued = next(e.time for e in events if e.type == EventType.EXECUTION_DEQUEUED)
    assert moved(after, "rb_admission_queue_wait_seconds_count", runbook=f"adm-queue-{suffix}") == 1
    assert moved(after, "rb_admission_queue_wait_seconds_count") == 1
    waited = moved(after, "rb_admission_queue_wait_seconds_sum")
    assert waited == pytest.approx((dequeued - requested).total_seconds(), abs=1e-6)
    assert moved(after, "rb_admission_refused_total") == 2
    assert moved(after, "rb_executions_started_total", runbook=f"adm-queue-{suffix}") == 2
    assert moved(after, "rb_executions_started_total", runbook=f"adm-reject-{suffix}") == 1
