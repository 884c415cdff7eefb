"""The issue-14 examples of sub-runbooks, notify and ai steps through the rb command: their
acceptance packs pass offline, `rb run` runs a child in process, both streams replay VERIFIED,
`rb fixture export` writes a child run back as a fixture, and a notify step without a notifier
fails saying so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def rb(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.parametrize(("pack", "scenarios"), [("rb-013-summarise-failure", 3), ("rb-014-sub-runbook", 2)])
def test_the_example_packs_pass(tmp_path: Path, pack: str, scenarios: int) -> None:
    result = rb("test", str(REPO / "runbooks" / pack), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == f"PASS {scenarios}/{scenarios} scenarios passed"


def test_rb_run_runs_the_child_in_process_and_both_replay(tmp_path: Path) -> None:
    result = rb("run", "rb-014-sub-runbook", "-p", "greeting=hey", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = sorted(p.stem for p in (tmp_path / "executions").glob("*.jsonl"))
    assert len(ids) == 2  # the parent and rb-000-hello as its child
    for execution_id in ids:
        replay = rb("replay", execution_id, home=tmp_path)
        assert replay.returncode == 0 and "REPLAY VERIFIED" in replay.stdout, replay.stdout
    parent = (
        next(line for line in result.stdout.splitlines() if line.startswith("execution id:"))
        .split(":")[1]
        .strip()
    )
    out = tmp_path / "exported"
    exported = rb("fixture", "export", parent, "--out", str(out), home=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    [fixture_path] = out.glob("*.yaml")
    fixture = yaml.safe_load(fixture_path.read_text())
    [child] = [i for i in ids if i != parent]
    assert fixture["steps"]["hello"]["result"]["execution_id"] == child
    again = rb("test", "rb-014-sub-runbook", "--fixture", str(fixture_path), home=tmp_path / "again")
    assert again.returncode == 0, again.stdout


def test_a_notify_step_needs_the_notifier(tmp_path: Path) -> None:
    runbook = tmp_path / "tell.yaml"
    runbook.write_text(
        "id: tell\nname: Tell\nsteps:\n  - {id: tell, type: notify, inputs: {message: hi, slack: {channel: '#ops'}}}\n"
    )
    result = rb("run", str(runbook), home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "notify steps are delivered by the notifier service" in result.stdout
