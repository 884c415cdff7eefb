"""A recorded run replays VERIFIED in processes with other hash seeds: expressions that build sets
(literals, comprehensions, set()) evaluate the same whatever PYTHONHASHSEED is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUNBOOK = """\
id: hash-seed-sets
name: Sets in expressions
version: 1.0.0
legal_basis: tests
parameters:
  type: object
  properties:
    hosts: {type: array, default: [web-3, db-1, web-1, cache-2, db-1, web-3, queue-7, api-9]}
steps:
  - id: distinct
    type: transform
    inputs:
      hosts: "${[h for h in {h for h in params.hosts}]}"
      kinds: "${{h[:3] for h in params.hosts}}"
      literal: "${[x for x in {'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'}]}"
      text: "kinds: ${set(params.hosts) - {'db-1'}}"
    outputs: {hosts: $.hosts, kinds: $.kinds, literal: $.literal, text: $.text}
  - id: report
    type: transform
    depends_on: [distinct]
    inputs:
      first: "${steps.distinct.outputs.hosts[0]}"
      joined: "${json(steps.distinct.outputs.kinds)}"
    outputs: {first: $.first, joined: $.joined}
"""


def rb(*args: str, home: Path, cwd: Path, seed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RB_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", "PYTHONHASHSEED": seed}
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_a_run_with_sets_replays_verified_under_other_hash_seeds(tmp_path: Path) -> None:
    runbook = tmp_path / "runbook.yaml"
    runbook.write_text(RUNBOOK)
    home = tmp_path / "home"
    run = rb("run", str(runbook), home=home, cwd=tmp_path, seed="0")
    assert run.returncode == 0, run.stdout + run.stderr
    execution_id = next(
        line.split(":", 1)[1].strip() for line in run.stdout.splitlines() if line.startswith("execution id:")
    )
    log = home / "executions" / f"{execution_id}.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    results = [
        e["data"] for e in events if e["type"] == "step.succeeded" and e["data"].get("step_id") == "distinct"
    ]
    assert results, [e["type"] for e in events]
    recorded = json.dumps(results[0], sort_keys=True)
    # First-insertion order, deduplicated: independent of the hash seed by construction.
    assert '["web-3", "db-1", "web-1", "cache-2", "queue-7", "api-9"]' in recorded
    assert '["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]' in recorded
    for seed in ("1", "2", "3"):
        replay = rb("replay", execution_id, home=home, cwd=tmp_path, seed=seed)
        assert replay.returncode == 0, f"PYTHONHASHSEED={seed}:\n{replay.stdout}{replay.stderr}"
        assert "REPLAY VERIFIED" in replay.stdout
    canonical = {rb("replay", execution_id, "--json", home=home, cwd=tmp_path, seed=s).stdout for s in "123"}
    assert len(canonical) == 1
