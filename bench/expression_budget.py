"""Expression budget: peak memory and time of hostile and ordinary expressions, against a baseline.

    .venv/bin/python bench/expression_budget.py [--baseline-ref REF] [--repeat N]

Each case runs in a fresh Python process (its peak RSS is its own), once with the evaluator of
the working tree and once with `libs/common/rb_common/expressions.py` as it was at REF (default
135ed26, the last commit before the budget), loaded beside today's rb_common. A child's address
space is capped at 4 GiB, so a baseline bomb cannot take the machine. Ordinary expressions are
timed (median of N runs of the whole set) to show what the step and allocation accounting costs.

Measured on the 2-core development machine (Python 3.11), one run each:

    case                                 baseline (135ed26)             budgeted
    issue: ['a'*99999 for x in ...]        953 MiB  0.58 s  too large      30 MiB  0.02 s  budget
    [[1]*9999 for x in [1]*9999]           766 MiB 23.28 s  too large      30 MiB  0.03 s  budget
    [('a'*99999)[::-1] for x in ...]       953 MiB  0.98 s  too large      14 MiB  0.02 s  budget
    [sorted([1]*99999) ...]               1529 MiB 38.43 s  too large      13 MiB  0.02 s  budget
    ordinary set (12 expressions)        median 7.04 ms                 median 3.13 ms

The baseline refused every bomb too, but only after building it (its size check ran on each
finished value, walking it: quadratic in a comprehension); the budget refuses before building.
(the exact figures of a run are printed; the bound the tests hold is 64 MiB of traced
allocation, tests/unit/common/test_expression_budget.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BOMBS = {
    "issue: ['a'*99999 for x in ...]": "['a' * 99999 for x in [1] * 9999]",
    "[[1]*9999 for x in [1]*9999]": "[[1] * 9999 for x in [1] * 9999]",
    "[('a'*99999)[::-1] for x in ...]": "[('a' * 99999)[::-1] for x in [1] * 9999]",
    "[sorted([1]*99999) ...]": "[sorted([1] * 99999) for x in [1] * 999]",
}

ORDINARY = [
    "params.threshold >= 50",
    "steps.measure.outputs.usage - steps.verify.outputs.usage",
    "len(steps.fetch.outputs.entities)",
    "[e.id for e in steps.fetch.outputs.entities if e.score > 10]",
    "sorted([e.score for e in steps.fetch.outputs.entities])[-1]",
    "upper(params.region) + '-' + lower(params.zone)",
    "json({'a': params.threshold, 'b': [1, 2, 3]})",
    "{e.id: e.score for e in steps.fetch.outputs.entities[:50]}",
    "any([e.score > 90 for e in steps.fetch.outputs.entities])",
    "'${x}' if params.flag else 'no'",
    "sum([e.score for e in steps.fetch.outputs.entities]) / 200",
    "{lower(x) for x in ['A', 'b', 'C', 'a']}",
]

CHILD = r"""
import importlib.util, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
path, mode, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if path == "-":
    from rb_common import expressions as module
else:
    spec = importlib.util.spec_from_file_location("baseline_expressions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "bomb":
    start = time.perf_counter()
    try:
        module.evaluate(payload, {})
        outcome = "evaluated"
    except MemoryError:
        outcome = "MemoryError"
    except Exception as exc:
        text = str(exc)
        outcome = "budget" if "would allocate" in text or "evaluation steps" in text else (
            "too large" if "too large" in text else type(exc).__name__)
    seconds = time.perf_counter() - start
else:
    ctx = {
        "params": {"threshold": 70, "region": "eu", "zone": "West-1", "flag": True},
        "steps": {
            "measure": {"outputs": {"usage": 91}}, "verify": {"outputs": {"usage": 40}},
            "fetch": {"outputs": {"entities": [{"id": f"e{i}", "score": i % 97} for i in range(200)]}},
        },
    }
    for source in payload:  # warm the parse cache
        module.evaluate(source, ctx)
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        for source in payload:
            module.evaluate(source, ctx)
        runs.append(time.perf_counter() - start)
    seconds = sorted(runs)[len(runs) // 2]
    outcome = "ok"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"mib": peak / 1024, "seconds": seconds, "outcome": outcome}))
"""


def run(path: str, mode: str, payload: object) -> dict[str, object]:
    paths = [str(p) for p in (ROOT / "libs").iterdir()] + [str(p) for p in (ROOT / "services").iterdir()]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, path, mode, json.dumps(payload)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    if result.returncode != 0:
        return {"mib": float("nan"), "seconds": float("nan"), "outcome": f"exit {result.returncode}"}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="135ed26")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{args.baseline_ref}:libs/common/rb_common/expressions.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline_expressions.py"
        baseline.write_text(source)
        print(f"{'case':36} {'baseline (' + args.baseline_ref + ')':30} budgeted")
        for name, expression in BOMBS.items():
            cells = []
            for path in (str(baseline), "-"):
                runs = [run(path, "bomb", expression) for _ in range(args.repeat)]
                mib = statistics.median(float(r["mib"]) for r in runs)  # type: ignore[arg-type]
                secs = statistics.median(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
                cells.append(f"{mib:5.0f} MiB {secs:5.2f} s  {runs[0]['outcome']:<10}")
            print(f"{name:36} {cells[0]:30} {cells[1]}")
        cells = []
        for path in (str(baseline), "-"):
            runs = [run(path, "ordinary", ORDINARY) for _ in range(args.repeat)]
            ms = statistics.median(float(r["seconds"]) for r in runs) * 1000  # type: ignore[arg-type]
            cells.append(f"median {ms:.2f} ms")
        print(f"{'ordinary set (' + str(len(ORDINARY)) + ' expressions)':36} {cells[0]:30} {cells[1]}")


if __name__ == "__main__":
    main()
