"""rb replay --against, rb audit verify and rb fixture export, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import PACK, execution_id, no_traceback, rb

pytestmark = pytest.mark.integration


@pytest.fixture
def recorded(tmp_path: Path) -> str:
    run = rb(
        "run",
        str(PACK / "runbook.yaml"),
        "--fixture",
        str(PACK / "fixtures/enrich-retries.yaml"),
        home=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return execution_id(run)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = (PACK / "runbook.yaml").read_text()
    assert old in text
    path = tmp_path / "edited" / "runbook.yaml"
    path.parent.mkdir(exist_ok=True)
    (path.parent / "schemas").mkdir(exist_ok=True)
    (path.parent / "schemas" / "entity-v2.json").write_text((PACK / "schemas/entity-v2.json").read_text())
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    retry: {max_attempts: 5}\n", "    retry: {max_attempts: 2}\n", "step 'enrich': will_retry"),
        (
            '      fetched: "${len(steps.ingest.outputs.entities)}"\n',
            '      fetched: "${len(steps.ingest.outputs.entities) + 1}"\n',
            "step 'report': step.scheduled.inputs",
        ),
        (
            '    outputs: {summary: "$"}\n',
            '    outputs: {summary: "$"}\n  - id: audit_note\n    type: transform\n    depends_on: [report]\n'
            '    inputs: {n: "${steps.report.outputs.summary}"}\n',
            "step.scheduled audit_note",
        ),
    ],
)
def test_against_reports_the_exact_divergence(
    tmp_path: Path, recorded: str, old: str, new: str, expected: str
) -> None:
    result = rb("replay", recorded, "--against", str(edited(tmp_path, old, new)), home=tmp_path)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout
    assert "REPLAY DEVIATES" in result.stdout


def test_against_an_unobservable_edit_is_clean(tmp_path: Path, recorded: str) -> None:
    path = edited(
        tmp_path,
        "    description: Summarise what was processed\n",
        "    description: Summarise what was processed (reworded)\n",
    )
    result = rb("replay", recorded, "--against", str(path), home=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "REPLAY VERIFIED" in result.stdout


def test_all_runs_of_a_runbook_can_gate_a_change(tmp_path: Path, recorded: str) -> None:
    rb("run", str(PACK / "runbook.yaml"), "--fixture", str(PACK / "fixtures/happy.yaml"), home=tmp_path)
    path = edited(tmp_path, "    retry: {max_attempts: 5}\n", "    retry: {max_attempts: 2}\n")
    result = rb(
        "replay", "--all", "--runbook", "rb-001-entity-enrichment", "--against", str(path), home=tmp_path
    )
    assert result.returncode == 1
    assert result.stdout.count("replaying execution") == 2
    assert result.stdout.count("REPLAY VERIFIED") == 1  # the happy run never retried


def test_audit_verify_detects_an_edited_event_in_the_local_log(tmp_path: Path, recorded: str) -> None:
    ok = rb("audit", "verify", recorded, home=tmp_path)
    assert ok.returncode == 0 and "AUDIT OK" in ok.stdout
    assert "legal basis: Per IC Policy 12.3" in ok.stdout
    log = tmp_path / "executions" / f"{recorded}.jsonl"
    lines = log.read_text().splitlines()
    event = json.loads(lines[5])
    event["actor"] = "mallory"
    lines[5] = json.dumps(event)
    log.write_text("\n".join(lines) + "\n")
    bad = rb("audit", "verify", recorded, "--json", home=tmp_path)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["intact"] is False
    assert report["problems"][0]["seq"] == 6 and "edited" in report["problems"][0]["problem"]
    no_traceback(bad)


def test_exported_fixture_passes_rb_test(tmp_path: Path, recorded: str) -> None:
    out = tmp_path / "exported"
    export = rb("fixture", "export", recorded, "--out", str(out), home=tmp_path)
    assert export.returncode == 0, export.stderr
    fixture = next(out.glob("*.yaml"))
    test = rb("test", str(PACK / "runbook.yaml"), "--fixture", str(fixture), home=tmp_path)
    assert test.returncode == 0, test.stdout
    assert "step enrich: succeeded after 3 attempts" in test.stdout
    expected = json.loads(next(out.glob("*.json")).read_text())
    assert expected["steps"]["enrich"]["attempts"] == 3
