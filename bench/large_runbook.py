"""Large runbooks in-process: steps/s of an N-step chain, and how long a cancel takes.

The runbook is a chain of N `transform` steps (the cheapest real step type: the coordinator
renders its inputs, the plugin returns them): "plain" with constant inputs, "reads" with each
step also reading the status of the step before it through an expression, as a chain that
passes data along would (an expression evaluated per step). It runs through `rb_engine.runner.Runner` (what `rb run` uses) with
the file event store (what `rb run` records into).

For each N it prints the steps/s of a full run, and the time from `Runner.cancel` (issued once
half of the steps have finished) to the execution being terminal (`Runner.run` returning
CANCELLED): wall clock, and this process's CPU time ("cpu st/s", "cpu ms": the figure of an
idle core; on a machine shared with other work the wall clock is mostly waiting for a core).

    .venv/bin/python bench/large_runbook.py                      # N = 100, 1,000, 10,000
    .venv/bin/python bench/large_runbook.py --baseline /tmp/main  # also main's code, small N

`--baseline DIR` runs the same measurement against another checkout of rb (for instance
`git archive main | tar -x -C DIR`) in a subprocess with that checkout's libs first on
PYTHONPATH, for the sizes in `--baseline-sizes` (main needs hours for 10,000 steps), and prints
the ratio of steps/s and of cancel time for the sizes both ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rb_common.model import Runbook
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.eventlog import FileEventStore
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry


def chain(n: int, reads: bool = False) -> Runbook:
    """N `transform` steps in a chain; with `reads`, each also reads the status of the step
    before it through an expression (a chain that passes data along)."""
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "transform", "inputs": {"i": 0}}]
    for i in range(1, n):
        inputs: dict[str, Any] = {"i": i}
        if reads:
            inputs["before"] = f"${{steps.s{i - 1}.status}}"
        steps.append({"id": f"s{i}", "type": "transform", "depends_on": [f"s{i - 1}"], "inputs": inputs})
    return Runbook.model_validate({"id": f"bench-chain-{n}", "name": f"chain of {n}", "steps": steps})


async def _run(rb: Runbook, events_dir: Path, cancel_at: int | None) -> dict[str, float | str]:
    settings, executor = Settings(), PluginExecutor(default_registry())
    store = FileEventStore(events_dir)
    half_done = asyncio.Event()

    def on_event(event: Any, state: Any) -> None:
        if cancel_at is not None and state.finished >= cancel_at:
            half_done.set()

    runner = Runner(store, executor, SystemClock(), settings, on_event=on_event)
    start, cpu = time.perf_counter(), time.process_time()
    run = asyncio.create_task(runner.run(RunRequest(runbook=rb)))
    try:
        if cancel_at is None:
            state = await run
            elapsed = time.perf_counter() - start
            return {
                "status": str(state.status),
                "seconds": elapsed,
                "cpu_seconds": time.process_time() - cpu,
                "finished": state.finished,
            }
        waiter = asyncio.create_task(half_done.wait())
        await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        asked, cpu = time.perf_counter(), time.process_time()
        runner.cancel("bench", "cancel mid-run")
        state = await run
        return {
            "status": str(state.status),
            "seconds": time.perf_counter() - asked,
            "cpu_seconds": time.process_time() - cpu,
            "finished": state.finished,
        }
    finally:
        store.close()


def measure(n: int, reads: bool = False) -> dict[str, Any]:
    rb = chain(n, reads)
    with tempfile.TemporaryDirectory() as tmp:
        full = asyncio.run(_run(rb, Path(tmp) / "full", None))
        cancel = asyncio.run(_run(rb, Path(tmp) / "cancel", n // 2))
    return {
        "n": n,
        "shape": "reads" if reads else "plain",
        "status": full["status"],
        "steps_per_s": n / float(full["seconds"]),
        "cpu_steps_per_s": n / float(full["cpu_seconds"]),
        "run_s": full["seconds"],
        "cancel_status": cancel["status"],
        "cancel_s": cancel["seconds"],
        "cancel_cpu_s": cancel["cpu_seconds"],
    }


def baseline(checkout: Path, sizes: list[int], shapes: list[str]) -> list[dict[str, Any]]:
    """The same measurement in a subprocess running another checkout's libs."""
    libs = [checkout / "libs" / name for name in ("common", "engine", "store")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in libs)}
    args = [sys.executable, __file__, "--json", "--sizes", *map(str, sizes), "--shapes", *shapes]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _row(label: str, r: dict[str, Any]) -> str:
    return (
        f"{label:<9} {r['shape']:<6} {r['n']:>7,} {r['status']:<10} {r['steps_per_s']:>10,.0f} "
        f"{r['cpu_steps_per_s']:>10,.0f} {r['run_s']:>9.2f} {r['cancel_status']:<10} "
        f"{r['cancel_s'] * 1000:>10.1f} {r['cancel_cpu_s'] * 1000:>10.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--shapes", nargs="+", choices=["plain", "reads"], default=["plain", "reads"])
    parser.add_argument("--baseline", type=Path, help="another rb checkout (e.g. main) to measure too")
    parser.add_argument("--baseline-sizes", type=int, nargs="+", default=[100, 1_000])
    parser.add_argument("--json", action="store_true", help="one JSON object per size (machine use)")
    args = parser.parse_args()
    if args.json:
        for shape in args.shapes:
            for n in args.sizes:
                print(json.dumps(measure(n, shape == "reads")), flush=True)
        return
    print(
        f"{'code':<9} {'shape':<6} {'steps':>7} {'status':<10} {'steps/s':>10} {'cpu st/s':>10} "
        f"{'run s':>9} {'cancel':<10} {'cancel ms':>10} {'cpu ms':>10}"
    )
    ours = {}
    for shape in args.shapes:
        for n in args.sizes:
            ours[shape, n] = measure(n, shape == "reads")
            print(_row("this", ours[shape, n]), flush=True)
    if args.baseline is None:
        return
    for r in baseline(args.baseline, args.baseline_sizes, args.shapes):
        print(_row("baseline", r), flush=True)
        mine = ours.get((r["shape"], r["n"]))
        if mine is not None:
            print(
                f"{'ratio':<9} {r['shape']:<6} {r['n']:>7,} steps/s {mine['steps_per_s'] / r['steps_per_s']:.1f}x, "
                f"cancel {r['cancel_s'] / mine['cancel_s']:.1f}x faster",
                flush=True,
            )


if __name__ == "__main__":
    main()
