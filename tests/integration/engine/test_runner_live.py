"""The in-process runner against real peers: HTTP on loopback, real processes, real time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.coordinator import ExecutionState
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration


async def run(
    yaml_text: str, tmp_path: Path, settings: Settings | None = None, **request: object
) -> tuple[ExecutionState, InMemoryEventStore]:
    runbook, _ = load_runbook_text(yaml_text)
    store = InMemoryEventStore()
    runner = Runner(
        store,
        PluginExecutor(default_registry()),
        SystemClock(),
        settings or Settings(home=tmp_path),
        secrets={"TOKEN": "s3cr3t-token-value"},
        base_dir=tmp_path,
    )
    state = await runner.run(RunRequest(runbook=runbook, **request))  # type: ignore[arg-type]
    return state, store


async def test_http_step_retries_a_server_that_fails_twice(http_server, tmp_path: Path) -> None:
    http_server.fail_then_succeed("/flaky", failures=2, body={"data": {"n": 7}})
    state, store = await run(
        f"""
id: flaky
name: Flaky
steps:
  - id: fetch
    type: data_fetch
    inputs: {{source_url: "{http_server.url_for("/flaky")}", auth_token: "${{secrets.TOKEN}}"}}
    outputs: {{n: "$.data.n"}}
    retry: {{max_attempts: 3, initial_delay: 50ms}}
""",
        tmp_path,
    )
    assert state.status == "SUCCEEDED"
    assert state.steps["fetch"].attempt == 3 and state.steps["fetch"].outputs == {"n": 7}
    requests = http_server.requests_to("/flaky")
    keys = [r.headers["idempotency-key"] for r in requests]
    assert keys == [f"{state.execution_id}:fetch:{n}" for n in (1, 2, 3)]
    assert all(r.headers["authorization"] == "Bearer s3cr3t-token-value" for r in requests)
    recorded = "".join(e.to_json() for e in store.read(state.execution_id))
    assert "s3cr3t-token-value" not in recorded and "${secrets.TOKEN}" in recorded


async def test_a_hanging_server_is_cut_off_at_the_step_timeout(http_server, tmp_path: Path) -> None:
    http_server.hang("/slow")
    start = time.monotonic()
    state, _ = await run(
        f"""
id: slow
name: Slow
steps:
  - id: fetch
    type: http
    inputs: {{url: "{http_server.url_for("/slow")}"}}
    timeout: 500ms
    retry: {{max_attempts: 2, initial_delay: 10ms}}
""",
        tmp_path,
    )
    elapsed = time.monotonic() - start
    assert state.status == "FAILED"
    assert state.steps["fetch"].error == "timed out after 0.5s"
    assert state.steps["fetch"].attempt == 2
    assert 1.0 <= elapsed < 3.0


async def test_independent_waits_run_in_parallel(tmp_path: Path) -> None:
    start = time.monotonic()
    state, _ = await run(
        """
id: waits
name: Waits
steps:
  - {id: a, type: wait, inputs: {seconds: 1s}}
  - {id: b, type: wait, inputs: {seconds: 1}}
""",
        tmp_path,
    )
    elapsed = time.monotonic() - start
    assert state.status == "SUCCEEDED"
    assert elapsed < 1.5, f"two 1 s waits took {elapsed:.2f} s"


async def test_shell_output_feeds_the_next_step_and_timeout_kills_it(tmp_path: Path) -> None:
    state, _ = await run(
        """
id: sh
name: Shell
steps:
  - id: hello
    type: shell
    inputs: {command: [python3, -c, "print(6 * 7)"]}
    outputs: {out: "$.stdout"}
  - id: use
    type: transform
    depends_on: [hello]
    inputs: {n: "${int(steps.hello.outputs.out) + 1}"}
    outputs: {n: "$.n"}
  - id: sleepy
    type: shell
    depends_on: [use]
    inputs: {command: [sleep, "30"]}
    timeout: 300ms
    on_failure: continue
""",
        tmp_path,
    )
    assert state.steps["use"].outputs == {"n": 43}
    assert state.steps["sleepy"].status == "FAILED" and "timed out" in (state.steps["sleepy"].error or "")


async def test_abort_cancels_a_running_sibling(http_server, tmp_path: Path) -> None:
    http_server.hang("/slow")
    http_server.respond("/bad", 400, json={"error": "nope"})
    start = time.monotonic()
    state, _ = await run(
        f"""
id: ab
name: Abort
steps:
  - {{id: slow, type: http, inputs: {{url: "{http_server.url_for("/slow")}"}}, timeout: 30s}}
  - {{id: bad, type: http, inputs: {{url: "{http_server.url_for("/bad")}"}}}}
""",
        tmp_path,
    )
    assert state.status == "FAILED" and state.failure is not None and state.failure.step_id == "bad"
    assert state.steps["slow"].error == "cancelled"
    assert time.monotonic() - start < 5


async def test_sql_query_step_reads_postgres(postgres_url: str, tmp_path: Path) -> None:
    state, _ = await run(
        """
id: sql
name: SQL
steps:
  - id: q
    type: sql_query
    inputs: {connection: reporting, query: "SELECT :n + 1 AS answer", params: {n: 41}}
    outputs: {answer: "$.rows[0].answer"}
""",
        tmp_path,
        Settings(home=tmp_path, connections={"reporting": postgres_url}),
    )
    assert state.status == "SUCCEEDED", state.reason
    assert state.steps["q"].outputs == {"answer": 42}
