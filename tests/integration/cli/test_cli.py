"""The rb command as an operator runs it: a real process, real files, exit codes and output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "runbooks" / "rb-001-entity-enrichment"


def rb(*args: str, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def execution_id(result: subprocess.CompletedProcess[str]) -> str:
    line = next(x for x in result.stdout.splitlines() if x.startswith("execution id:"))
    return line.split(":", 1)[1].strip()


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_run_then_replay_is_verified_and_json_is_byte_stable(tmp_path: Path) -> None:
    run = rb("run", "rb-001-entity-enrichment", "--fixture", str(PACK / "fixtures/happy.yaml"), home=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    ex = execution_id(run)
    replay = rb("replay", ex, home=tmp_path)
    assert replay.returncode == 0, replay.stdout
    assert "REPLAY VERIFIED" in replay.stdout
    first = rb("replay", ex, "--json", home=tmp_path)
    second = rb("replay", ex[:10], "--json", home=tmp_path)
    assert first.returncode == 0 and first.stdout == second.stdout
    assert first.stdout == (PACK / "expected/happy.json").read_text()
    assert ex not in first.stdout


def test_editing_a_recorded_output_makes_replay_fail_naming_the_step(tmp_path: Path) -> None:
    run = rb("run", str(PACK / "runbook.yaml"), "--fixture", str(PACK / "fixtures/happy.yaml"), home=tmp_path)
    ex = execution_id(run)
    log = tmp_path / "executions" / f"{ex}.jsonl"
    lines = log.read_text().splitlines()
    for i, line in enumerate(lines):
        event = json.loads(line)
        if event["type"] == "step.succeeded" and event["data"]["step_id"] == "enrich":
            event["data"]["outputs"]["enriched"][0]["country"] = "XX"
            lines[i] = json.dumps(event)
    log.write_text("\n".join(lines) + "\n")
    replay = rb("replay", ex, home=tmp_path)
    assert replay.returncode == 1
    assert "step 'enrich': outputs.enriched" in replay.stdout
    assert "REPLAY VERIFIED" not in replay.stdout


def test_dropping_an_event_is_a_deviation(tmp_path: Path) -> None:
    run = rb(
        "run",
        str(PACK / "runbook.yaml"),
        "--fixture",
        str(PACK / "fixtures/enrich-retries.yaml"),
        home=tmp_path,
    )
    ex = execution_id(run)
    log = tmp_path / "executions" / f"{ex}.jsonl"
    lines = log.read_text().splitlines()
    kept = [line for line in lines if not ('"step.scheduled"' in line and '"attempt":2' in line)]
    assert len(kept) == len(lines) - 1
    log.write_text("\n".join(kept) + "\n")
    replay = rb("replay", ex, home=tmp_path)
    assert replay.returncode == 1 and "enrich" in replay.stdout


def test_acceptance_pack_passes(tmp_path: Path) -> None:
    result = rb("test", str(PACK), home=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("PASS 4/4")
    assert "✓ step enrich: succeeded after 3 attempts" in result.stdout


def test_a_failing_expectation_fails_the_test(tmp_path: Path) -> None:
    fixture = tmp_path / "wrong.yaml"
    fixture.write_text(
        (PACK / "fixtures/happy.yaml").read_text() + "expect:\n  steps: {enrich: {attempts: 2}}\n"
    )
    result = rb("test", str(PACK / "runbook.yaml"), "--fixture", str(fixture), home=tmp_path)
    assert result.returncode == 1
    assert "✗ step enrich: succeeded — expected 2 attempts" in result.stdout
    assert result.stdout.rstrip().endswith("FAIL 0/1 scenarios passed")


def test_an_external_step_without_a_stub_fails_naming_it(tmp_path: Path) -> None:
    fixture = tmp_path / "nostub.yaml"
    fixture.write_text("assumptions: {source_data_validated: true}\n")
    result = rb("test", str(PACK / "runbook.yaml"), "--fixture", str(fixture), home=tmp_path)
    assert result.returncode == 1
    assert "no fixture stub for external step 'ingest' (type data_fetch)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "does-not-exist"), "no runbook 'does-not-exist'"),
        (("test", str(PACK / "runbook.yaml"), "--fixture", "/nonexistent.yaml"), "cannot read fixture"),
        (("replay", "feedbeef"), "no recorded execution 'feedbeef'"),
        (("validate", "/nonexistent/x.yaml"), "no such file or directory"),
        (("run", str(PACK / "runbook.yaml"), "--param", "batch_size"), "--param takes key=value"),
        (("run", str(PACK / "runbook.yaml"), "--param", "batch_size=-3"), "batch_size"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = rb(*args, home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    no_traceback(result)


def test_bad_yaml_fixture_and_runbook_are_input_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\nname: [unclosed\n")
    result = rb("run", str(broken), home=tmp_path)
    assert (
        (result.returncode == 2 and "broken.yaml" in result.stderr and "line" in result.stderr.lower())
        or ":3" in result.stderr
        or ":2" in result.stderr
    )
    no_traceback(result)
    bad_fixture = tmp_path / "fx.yaml"
    bad_fixture.write_text("steps: {ingest: {reslt: 1}}\n")
    result = rb("test", str(PACK / "runbook.yaml"), "--fixture", str(bad_fixture), home=tmp_path)
    assert result.returncode == 2 and "fx.yaml" in result.stderr
    no_traceback(result)


def test_validate_reports_a_cycle_with_exit_1(tmp_path: Path) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(PACK, copy)
    text = (
        (copy / "runbook.yaml")
        .read_text()
        .replace("    depends_on: [ingest]\n", "    depends_on: [ingest, report]\n", 1)
    )
    (copy / "runbook.yaml").write_text(text)
    result = rb("validate", str(copy / "runbook.yaml"), home=tmp_path)
    assert result.returncode == 1
    assert "validate -> enrich -> report -> validate" in result.stdout or "cycle" in result.stdout
    no_traceback(result)
