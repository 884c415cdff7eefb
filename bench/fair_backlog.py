"""A burst of executions against `rb serve executor`, with and without the running limit
(issue 15, "fair and bounded").

Publishes N triggers of a chain (transform -> wait 1 s -> transform) at once, then follows every
execution's events (a core subscription on `<ns>.exec.*`) and prints: when the first execution
finished, how many had finished after 10 s and 30 s, trigger-to-completion p50/p95, the time
to finish all, and how long the continuing step (the transform after the wait: its
step.scheduled to step.succeeded) waited, p50/p95. Run it once per limit:

    .venv/bin/python bench/fair_backlog.py --executions 500 --limit 20
    .venv/bin/python bench/fair_backlog.py --executions 500 --limit 100000   # as before

Needs NATS with JetStream at RB_NATS_URL (a private nats-server: `nats-server -js -p PORT -sd
DIR`); each run uses a namespace of its own and deletes it afterwards. Numbers: bench/fair.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from rb_common.bus import Bus, connect
from rb_common.loader import load_runbook_text
from rb_common.messages import TriggerRequest
from rb_common.registry_events import announce, ensure_bucket
from rb_engine.runner import RunRequest

NATS = os.environ.get("RB_NATS_URL", "nats://127.0.0.1:4222")
TERMINAL = {"execution.succeeded", "execution.failed", "execution.aborted", "execution.cancelled"}

RUNBOOK = """\
id: fair-bench
name: Fair bench
steps:
  - {id: a, type: transform, inputs: {x: 1}}
  - {id: w, type: wait, depends_on: [a], inputs: {seconds: 1}}
  - {id: b, type: transform, depends_on: [w], inputs: {x: 2}}
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--limit", type=int, default=20, help="RB_MAX_RUNNING_EXECUTIONS")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    namespace = f"fair{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix="rb-fair-bench-"))
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_NATS_URL": NATS,
        "RB_NAMESPACE": namespace,
        "RB_LOG_LEVEL": "WARNING",
        "RB_MAX_RUNNING_EXECUTIONS": str(args.limit),
        "RB_MAX_QUEUED_EXECUTIONS": str(args.executions * 2),
    }
    bus: Bus = await connect(NATS, namespace=namespace, name="rb-fair-bench")
    log = (home / "executor.log").open("ab")
    executor = subprocess.Popen(
        [sys.executable, "-m", "rb_cli", "serve", "executor"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        runbook, _ = load_runbook_text(RUNBOOK)
        await ensure_bucket(bus.js, bus.names)
        await announce(bus, runbook.id, "approved", revision=1, status="APPROVED", actor="bench")
        data = RunRequest(runbook=runbook, trigger={"revision": 1}).event_data()
        deadline = time.monotonic() + 120
        while True:  # until the executor's trigger consumer exists
            try:
                await bus.js.consumer_info(bus.names.triggers_stream, "executor-triggers-q")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

        triggered: dict[str, float] = {}
        done: dict[str, float] = {}
        scheduled_b: dict[str, float] = {}
        started: dict[str, float] = {}
        recorded: dict[str, float] = {}
        waited_b: list[float] = []
        all_done = asyncio.Event()

        async def on_event(msg: object) -> None:
            now = time.monotonic()
            event = orjson.loads(msg.data)  # type: ignore[attr-defined]
            execution_id, type_ = event["execution_id"], event["type"]
            step = event.get("data", {}).get("step_id")
            if type_ == "execution.started":
                started[execution_id] = now
            elif type_ == "execution.requested":
                recorded[execution_id] = now
            elif type_ == "step.scheduled" and step == "b":
                scheduled_b[execution_id] = now
            elif type_ == "step.succeeded" and step == "b" and execution_id in scheduled_b:
                waited_b.append(now - scheduled_b[execution_id])
            elif type_ in TERMINAL:
                done[execution_id] = now
                if len(done) >= args.executions:
                    all_done.set()

        sub = await bus.nc.subscribe(bus.names.all_of("exec"), cb=on_event)
        start = time.monotonic()
        ids = [uuid.uuid4().hex for _ in range(args.executions)]
        for chunk in range(0, len(ids), 100):
            sends = []
            for execution_id in ids[chunk : chunk + 100]:
                message = TriggerRequest(execution_id=execution_id, actor="bench", data=data)
                triggered[execution_id] = time.monotonic()
                sends.append(
                    bus.js.publish(
                        bus.names.trigger_subject(runbook.id),
                        message.encode(),
                        headers={"Nats-Msg-Id": execution_id},
                        stream=bus.names.triggers_stream,
                    )
                )
            await asyncio.gather(*sends)
        published = time.monotonic() - start
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), args.timeout)
        await sub.unsubscribe()

        ends = sorted(t - start for t in done.values())
        latency = [done[e] - triggered[e] for e in done if e in triggered]
        print(f"limit {args.limit}, {args.executions} executions (published in {published:.1f} s)")
        print(f"  first finished after   {ends[0]:.1f} s" if ends else "  none finished")
        for mark in (10, 30):
            print(
                f"  within {mark:>3} s: {sum(1 for t in recorded.values() if t - start <= mark)} recorded,"
                f" {sum(1 for t in started.values() if t - start <= mark)} started,"
                f" {sum(1 for t in ends if t <= mark)} finished"
            )
        print(f"  all finished after     {ends[-1]:.1f} s ({len(ends)} of {args.executions})" if ends else "")
        print(f"  trigger-to-completion  p50 {pct(latency, 0.5):.1f} s, p95 {pct(latency, 0.95):.1f} s")
        print(
            f"  continuing step wait   p50 {pct(waited_b, 0.5) * 1000:.0f} ms, "
            f"p95 {pct(waited_b, 0.95) * 1000:.0f} ms (step b: scheduled -> succeeded)"
        )
        if waited_b:
            print(f"  (mean {statistics.mean(waited_b) * 1000:.0f} ms over {len(waited_b)})")
    finally:
        executor.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            executor.wait(timeout=20)
        for name in [c.name or "" for c in bus.names.streams()] + [
            bus.names.registry_stream,
            f"KV_{bus.names.admission_bucket}",
        ]:
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(name)
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
