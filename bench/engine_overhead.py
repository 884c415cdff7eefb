"""Orchestration overhead of the in-process engine on 100-step no-op DAGs.

Shapes: a chain of 100 steps, and a 10x10 fan-out (10 layers of 10 steps, each step depending
on every step of the layer before). Steps are `transform`s with no inputs, so the time measured
is the coordinator, the runner, event recording and the plugin call. The baseline runs the same
DAG as bare asyncio tasks with no coordinator and no events: the ratio says what rb costs.

    .venv/bin/python bench/engine_overhead.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rb_common.model import Runbook
from rb_common.ports import EventStore, InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.eventlog import FileEventStore
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry


def chain(n: int = 100) -> dict[str, list[str]]:
    return {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}


def fan_out(width: int = 10, depth: int = 10) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for layer in range(depth):
        for j in range(width):
            deps[f"l{layer}_{j}"] = [f"l{layer - 1}_{k}" for k in range(width)] if layer else []
    return deps


def runbook(name: str, deps: dict[str, list[str]]) -> Runbook:
    return Runbook.model_validate(
        {
            "id": f"bench-{name}",
            "name": name,
            "defaults": {"concurrency": 10},
            "steps": [{"id": sid, "type": "transform", "depends_on": d} for sid, d in deps.items()],
        }
    )


async def run_engine(rb: Runbook, store: EventStore, settings: Settings, executor: PluginExecutor) -> None:
    # Settings and plugins are built once per process, as the services do; not per run.
    runner = Runner(store, executor, SystemClock(), settings)
    state = await runner.run(RunRequest(runbook=rb))
    assert state.status == "SUCCEEDED", state.reason


async def run_baseline(deps: dict[str, list[str]]) -> None:
    """The same DAG as plain asyncio tasks: the floor any orchestrator sits on."""
    done: dict[str, asyncio.Future[None]] = {sid: asyncio.get_running_loop().create_future() for sid in deps}

    async def step(sid: str) -> None:
        for d in deps[sid]:
            await done[d]
        await asyncio.sleep(0)
        done[sid].set_result(None)

    await asyncio.gather(*(step(sid) for sid in deps))


def measure(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        asyncio.run(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(
        f"{'shape':<12} {'store':<8} {'median ms':>10} {'ms/step':>8} {'baseline ms/step':>17} {'ratio':>7}"
    )
    settings, executor = Settings(), PluginExecutor(default_registry())
    with tempfile.TemporaryDirectory() as tmp:
        for name, deps in (("chain-100", chain()), ("fanout-10x10", fan_out())):
            rb = runbook(name, deps)
            n = len(deps)
            base = measure(lambda d=deps: run_baseline(d), args.repeat) / n * 1000
            for store_name in ("memory", "file"):

                def make(store_name: str = store_name, rb: Runbook = rb) -> object:
                    store = InMemoryEventStore() if store_name == "memory" else FileEventStore(Path(tmp))
                    return run_engine(rb, store, settings, executor)

                per_step = measure(make, args.repeat) / n * 1000
                print(
                    f"{name:<12} {store_name:<8} {per_step * n:>10.1f} {per_step:>8.3f} "
                    f"{base:>17.4f} {per_step / base:>7.0f}x"
                )


if __name__ == "__main__":
    main()
