"""POST /runbooks/{id}/execute past the queue's bound (rb_api.backpressure): 429 problem+json
with Retry-After, nothing published, and the refusal counted on /metrics; under the bound it is
accepted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from api_auth_support import approve
from prometheus_client.parser import text_string_to_metric_families

from rb_common.bus import Bus
from rb_common.settings import Settings
from rb_common.slots import Slot, Table

PROBLEM = "application/problem+json"


async def register(client: httpx.AsyncClient, text: str) -> None:
    r = await client.post("/api/v1/runbooks", content=text, headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    await approve(client, r.json()["id"])


async def put_queue(bus: Bus, waiting: int) -> None:
    """What the executors' admission writes: a slot table with `waiting` queued executions."""
    table = Table(queue=[Slot(f"q{i}", "other") for i in range(waiting)])
    bucket = bus.names.admission_bucket
    await bus.js.publish(f"$KV.{bucket}.table", table.encode(), stream=f"KV_{bucket}")


async def test_past_the_bound_execute_answers_429_with_retry_after(
    client: httpx.AsyncClient, bus: Bus, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    await register(client, make_yaml(runbook_id))
    bound = Settings().max_queued_executions
    await put_queue(bus, bound - 1)
    accepted = await client.post(f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "eu"}})
    assert accepted.status_code == 202, accepted.text

    await put_queue(bus, bound)
    # The figure is read again in the background once it is 0.25 s old: requests until then (and
    # the one that starts the read) are still let through.
    accepted_ids = {accepted.json()["execution_id"]}
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        refused = await client.post(
            f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "eu"}}
        )
        if refused.status_code == 429 or asyncio.get_running_loop().time() > deadline:
            break
        assert refused.status_code == 202, refused.text
        accepted_ids.add(refused.json()["execution_id"])
        await asyncio.sleep(0.05)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.headers["retry-after"] == str(Settings().queue_retry_after)
    # The figure counts the queue, plus a request still publishing while it was read (it errs
    # high by the admissions in flight, never low).
    waiting = int(refused.json()["detail"].split(" executions wait for a slot")[0])
    assert bound <= waiting <= bound + 1, refused.json()["detail"]
    triggers, _ = await probe.triggers(runbook_id)
    assert len(triggers) == len(accepted_ids)  # only the accepted ones reached the bus

    # Counted on the API's /metrics, by route and reason; the 202 is not a refusal.
    metrics = (await client.get("/metrics")).text
    route = "/api/v1/runbooks/{runbook_id}/execute"
    refusals = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "rb_api_requests_refused_total"
    ]
    assert refusals == [({"route": route, "reason": "queue-full"}, 1.0)]

    # GraphQL's execute goes through the same check: an error with the status, nothing published.
    mutation = (
        f'mutation {{ executeRunbook(id: "{runbook_id}", params: {{region: "eu"}}) {{ executionId }} }}'
    )
    answer = (await client.post("/graphql", json={"query": mutation})).json()
    assert answer["data"] is None and answer["errors"][0]["extensions"]["status"] == 429, answer
    assert (await probe.triggers(runbook_id))[0] == triggers


async def test_requests_let_through_count_until_a_read_and_are_read_again_before_a_refusal(bus: Bus) -> None:
    """A burst faster than the figure's reads cannot overshoot the bound; a figure at the bound
    only by such requests is read again before refusing."""
    from rb_api.backpressure import QueueGate
    from rb_api.problems import ProblemError

    bound = 5
    await put_queue(bus, bound - 2)
    gate = QueueGate(ttl=60.0)  # no background read during the test
    await gate.check(bus, bound, retry_after=3)
    await gate.check(bus, bound, retry_after=3)  # bound - 2 read + 2 let through: at the bound
    # Both still unpublished: the read again finds bound - 2 and adds them.
    try:
        await gate.check(bus, bound, retry_after=3)
        raise AssertionError("a third request was let through past the bound")
    except ProblemError as refused:
        assert refused.status == 429
    # Both published, and the executors took one of the waiting ones off the queue meanwhile.
    gate.settled()
    gate.settled()
    await put_queue(bus, bound - 1)
    await gate.refresh(bus)  # the next read (in the background once the figure is stale)
    await gate.check(bus, bound, retry_after=3)  # bound - 1
