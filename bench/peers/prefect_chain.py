"""The Prefect side of bench/peers: a chain of N no-op tasks as one Prefect 3 flow.

Runs in Prefect's own venv (made by peers.py from requirements-prefect.txt), never in rb's.
Prefect talks to a local ephemeral server it starts itself (PREFECT_API_URL unset, a fresh
PREFECT_HOME with its own SQLite database: no cloud, no server shared with anything else).

A line protocol on stdin/stdout, so peers.py can keep this process (and its server) warm and
alternate rounds with rb's:

    -> run N [wait]  one flow run of N chained tasks (with "wait": and until it is recorded)
    <- {"seconds": S, "recorded": R}
    -> quit

S is the flow call to its return in this process: the flow run created and moved through its
states on the server (HTTP), each task run's orchestration in this process (its state changes go
to the server as events over a websocket, not waited for) and the task bodies (a no-op). R is S
plus the wait, after the flow returned, until the server lists all N task runs as COMPLETED
(polled every 10 ms; null if not within the timeout or not asked for): what the server has recorded, the analogue
of rb's recorder having projected the execution into PostgreSQL.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import prefect
from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


@task(cache_policy=NO_CACHE, persist_result=False)
def noop(x: int) -> int:
    """A no-op step whose result is the next one's input, so the chain is a real dependency."""
    return x + 1


@flow(persist_result=False)
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = noop(x)
    return x


def recorded(flow_run_id: Any, n: int, timeout: float = 30.0) -> int:
    """How many of the flow run's task runs the server lists as COMPLETED, polling until all
    n are or the timeout passes."""
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + timeout
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=n + 10
            )
            done = sum(1 for run in runs if run.state is not None and run.state.is_completed())
            if done >= n or time.monotonic() > deadline:
                return done
            time.sleep(0.01)


def run(n: int, wait: bool) -> dict[str, Any]:
    start = time.perf_counter()
    state = chain(n, return_state=True)
    seconds = time.perf_counter() - start
    if not state.is_completed() or state.result() != n:
        return {"error": f"flow run ended {state.type.value}: {state.message}"}
    if not wait:
        return {"seconds": seconds, "recorded": None}
    done = recorded(state.state_details.flow_run_id, n)
    return {"seconds": seconds, "recorded": time.perf_counter() - start if done >= n else None}


def main() -> None:
    print(json.dumps({"ready": True, "prefect": prefect.__version__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        try:
            answer = run(int(words[1]), wait="wait" in words[2:])
        except Exception as exc:  # reported to peers.py, which stops the benchmark
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
