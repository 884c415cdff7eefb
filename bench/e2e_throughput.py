"""End-to-end throughput and latency of the distributed engine over real NATS and PostgreSQL.

Starts `rb serve executor` (coordinator + workers) and `rb serve recorder` (writing to a fresh
PostgreSQL database) as their own processes, then measures:

  throughput  many concurrent executions of a 10-step no-op runbook: steps per second from the
              first trigger to the last terminal event (and until the recorder has projected all)
  latency     trigger-to-completion of a 40-step chain, p50/p95 over sequential runs, and the
              orchestration overhead per step (p50 / 40)

Baseline, side by side: the same runbooks on the in-process engine (`rb run`'s runner), which
has the same coordinator but no NATS, no processes and no database.

    .venv/bin/python bench/e2e_throughput.py [--executions 200] [--chains 20] [--replicas 1]

Needs NATS with JetStream at RB_NATS_URL (default nats://127.0.0.1:4222) and PostgreSQL at
RB_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres, used to create and
drop a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from rb_common.bus import Bus, connect
from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.messages import TriggerRequest
from rb_common.ports import InMemoryEventStore
from rb_common.registry_events import announce, ensure_bucket
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

NATS = os.environ.get("RB_NATS_URL", "nats://127.0.0.1:4222")
# A namespace of the run's own: nothing of another stack or run on the same NATS is seen.
NAMESPACE = os.environ.get("RB_NAMESPACE") or f"bench{uuid.uuid4().hex[:8]}"
PG_ADMIN = os.environ.get("RB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TERMINAL = {
    t.value
    for t in (
        EventType.EXECUTION_SUCCEEDED,
        EventType.EXECUTION_FAILED,
        EventType.EXECUTION_ABORTED,
        EventType.EXECUTION_CANCELLED,
    )
}


def fan_runbook(name: str) -> str:
    """10 no-op steps: two chains of five, so both parallelism and ordering are exercised."""
    steps = []
    for chain in "ab":
        for i in range(5):
            dep = f", depends_on: [{chain}{i - 1}]" if i else ""
            steps.append(f"  - {{id: {chain}{i}, type: transform{dep}}}\n")
    return f"id: {name}\nname: bench\nsteps:\n" + "".join(steps)


def chain_runbook(name: str, n: int = 40) -> str:
    steps = "".join(
        f"  - {{id: s{i}, type: transform{f', depends_on: [s{i - 1}]' if i else ''}}}\n" for i in range(n)
    )
    return f"id: {name}\nname: bench\nsteps:\n{steps}"


class Watcher:
    """Terminal events of every execution, from a core NATS subscription (no polling)."""

    def __init__(self) -> None:
        self.done: dict[str, tuple[float, str]] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def on_event(self, msg) -> None:  # type: ignore[no-untyped-def]
        if b'"type":"execution.' not in msg.data:
            return
        event = Event.from_json(msg.data)
        if event.type.value in TERMINAL:
            now = time.perf_counter()
            self.done[event.execution_id] = (now, event.type.value)
            waiter = self.waiters.pop(event.execution_id, None)
            if waiter and not waiter.done():
                waiter.set_result(now)


@functools.lru_cache(maxsize=8)
def requested_data(text: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    """Parsed once: the benchmark client must not be what is measured."""
    runbook, _ = load_runbook_text(text)
    # Revision 1, approved in the registry bucket by `approve` (the executor checks it).
    return runbook.id, RunRequest(runbook=runbook, trigger={"revision": 1}).event_data()


async def approve(bus: Bus, text: str) -> None:
    """The executor starts only the APPROVED revision the registry bucket names."""
    runbook_id, _ = requested_data(text)
    await ensure_bucket(bus.js, bus.names)
    await announce(bus, runbook_id, "approved", revision=1, status="APPROVED", actor="bench")


async def consumers_ready(bus: Bus, home: Path, *, recorder: bool, timeout: float = 120.0) -> None:
    """Until the services have created their consumers: the recorder's starts at NEW, so an
    event published before it exists would never be projected."""
    names = bus.names
    wanted = [(names.triggers_stream, "executor-triggers-q"), (names.tasks_stream, "workers")]
    if recorder:
        wanted.append((names.events_stream, f"recorder-{home.name}"))
    deadline = time.monotonic() + timeout
    for stream, consumer in wanted:
        while True:
            try:
                await bus.js.consumer_info(stream, consumer)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{consumer} on {stream} not there after {timeout:g}s") from None
                await asyncio.sleep(0.1)


async def trigger(bus: Bus, text: str, execution_id: str) -> None:
    runbook_id, data = requested_data(text)
    message = TriggerRequest(execution_id=execution_id, actor="bench", data=data)
    await bus.js.publish(
        bus.names.trigger_subject(runbook_id),
        message.encode(),
        headers={"Nats-Msg-Id": execution_id},
        stream=bus.names.triggers_stream,
    )


async def in_process_baseline(text: str, runs: int) -> float:
    runbook, _ = load_runbook_text(text)
    times = []
    for _ in range(runs):
        runner = Runner(InMemoryEventStore(), PluginExecutor(default_registry()), SystemClock(), Settings())
        start = time.perf_counter()
        await runner.run(RunRequest(runbook=runbook))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def start_services(
    home: Path, database_url: str, replicas: int, recorder: bool = True
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_NATS_URL": NATS,
        "RB_NAMESPACE": NAMESPACE,
        "RB_DATABASE_URL": database_url,
        "RB_LOG_LEVEL": "WARNING",
        "RB_RECORDER_CONSUMER": f"recorder-{home.name}",
        "RB_RECORDER_DELIVER": "new",
    }
    procs = []
    for service in ["recorder"] * recorder + ["executor"] * replicas:
        log = (home / f"{service}-{len(procs)}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rb_cli", "serve", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def recorded_executions(database_url: str, ids: list[str]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runbook_executions WHERE id = ANY(%s) AND status = 'SUCCEEDED'", (ids,)
        ).fetchone()
        return int(row[0]) if row else 0


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=1, help="executor processes")
    parser.add_argument("--no-recorder", action="store_true", help="measure the executor alone")
    args = parser.parse_args()

    db = f"rb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    home = Path(tempfile.mkdtemp(prefix="rb-bench-"))
    procs = start_services(home, database_url, args.replicas, recorder=not args.no_recorder)
    bus = await connect(NATS, namespace=NAMESPACE, name="rb-bench")
    watcher = Watcher()
    sub = await bus.nc.subscribe(bus.names.all_of("exec"), cb=watcher.on_event)
    try:
        await consumers_ready(bus, home, recorder=not args.no_recorder)
        # Warm-up: one of each, so start-up costs are not measured.
        for text in (fan_runbook("bench-fan"), chain_runbook("bench-chain")):
            await approve(bus, text)
            ex = uuid.uuid4().hex
            waiter = watcher.waiters[ex] = asyncio.get_running_loop().create_future()
            await trigger(bus, text, ex)
            await asyncio.wait_for(waiter, 60)

        # Throughput.
        ids = [uuid.uuid4().hex for _ in range(args.executions)]
        fan = fan_runbook("bench-fan")
        start = time.perf_counter()
        await asyncio.gather(*(trigger(bus, fan, ex) for ex in ids))
        deadline = time.monotonic() + 300
        while len([i for i in ids if i in watcher.done]) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        finished = [watcher.done[i] for i in ids if i in watcher.done]
        elapsed = max(t for t, _ in finished) - start
        succeeded = sum(1 for _, status in finished if status == "execution.succeeded")
        steps_per_s = succeeded * 10 / elapsed
        while (
            not args.no_recorder
            and recorded_executions(database_url, ids) < succeeded
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.2)
        recorded_elapsed = time.perf_counter() - start
        recorded = 0 if args.no_recorder else recorded_executions(database_url, ids)

        # Latency of a 40-step chain, one at a time.
        chain = chain_runbook("bench-chain")
        latencies = []
        for _ in range(args.chains):
            ex = uuid.uuid4().hex
            waiter = watcher.waiters[ex] = asyncio.get_running_loop().create_future()
            t0 = time.perf_counter()
            await trigger(bus, chain, ex)
            latencies.append(await asyncio.wait_for(waiter, 60) - t0)
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]

        base_fan = await in_process_baseline(fan, 20)
        base_chain = await in_process_baseline(chain, 20)
        print(f"executor replicas: {args.replicas}; recorder: 1 (PostgreSQL {db})")
        print(
            f"throughput: {succeeded}/{args.executions} executions x 10 steps in {elapsed:.2f} s "
            f"= {steps_per_s:.0f} steps/s (target >= 500); recorder had projected {recorded} "
            f"after {recorded_elapsed:.2f} s"
        )
        print(
            f"  in-process baseline: {10 / base_fan:.0f} steps/s for one execution at a time "
            f"({base_fan * 1000:.1f} ms per 10-step run)"
        )
        print(
            f"latency 40-step chain: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; "
            f"overhead per step {p50 / 40 * 1000:.2f} ms (target < 2 ms)"
        )
        print(
            f"  in-process baseline: {base_chain * 1000:.1f} ms per chain = {base_chain / 40 * 1000:.3f} ms/step; "
            f"ratio distributed/in-process {p50 / base_chain:.1f}x"
        )
    finally:
        await sub.unsubscribe()
        await bus.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        cleanup = await connect(NATS, namespace=NAMESPACE, name="rb-bench-cleanup")
        for config in cleanup.names.streams():
            with contextlib.suppress(Exception):
                await cleanup.js.delete_stream(config.name or "")
        await cleanup.close()


if __name__ == "__main__":
    asyncio.run(main())
