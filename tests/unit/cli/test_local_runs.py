"""`rb run` KPI lines, `rb test` kept apart from real runs, `rb replay --all`'s summary,
`rb graph` and `rb new` (local files only: the runs are real, recorded under a temporary RB_HOME)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, Rb

BREACHING = """\
id: kpi-breach
name: A step fails under on_failure continue
version: 1.0.0
owner: me
legal_basis: test
kpis:
  max_duration_seconds: 60
  min_success_rate: 1.0
  max_error_rate: 0.0
  answer: "${steps.compute.outputs.n}"
steps:
  - id: compute
    type: transform
    inputs: {n: 42}
    outputs: {n: "$.n"}
  - id: optional_check
    type: assert
    depends_on: [compute]
    on_failure: continue
    inputs: {that: "${steps.compute.outputs.n == 41}", message: not 41}
  - id: report
    type: transform
    depends_on: [optional_check]
    inputs: {check: "${steps.optional_check.status}"}
"""


def execution_id(out: str) -> str:
    match = re.search(r"execution id: ([0-9a-f]{32})", out)
    assert match, out
    return match.group(1)


def test_rb_run_prints_kpis_with_targets_and_explains_a_continued_failure(rb: Rb, tmp_path: Path) -> None:
    runbook = tmp_path / "runbook.yaml"
    runbook.write_text(BREACHING)
    code, out, err = rb("run", str(runbook))
    assert code == 0, out + err  # the run succeeded: its steps did their job
    lines = out.splitlines()
    failed = next(line for line in lines if "✗ optional_check" in line)
    assert "on_failure: continue" in failed and "the run goes on" in failed
    assert "KPIs:" in lines
    assert any(re.search(r"✓ kpi duration_seconds = [\d.]+ \(target ≤ 60", line) for line in lines), out
    success = next(line for line in lines if "kpi success_rate" in line)
    assert "✗" in success and "(target ≥ 1.0)" in success
    assert "failed under on_failure: continue: optional_check" in success
    assert any("✗ kpi error_rate" in line for line in lines), out
    assert any("kpi answer = 42" in line for line in lines), out
    assert "SUCCEEDED (KPI targets breached: error_rate, success_rate)" in out


def test_rb_run_without_breaches_has_only_ticks(rb: Rb) -> None:
    code, out, _ = rb(
        "run", "rb-000-hello", "--fixture", str(REPO / "runbooks/rb-000-hello/fixtures/ok.yaml")
    )
    assert code == 0
    kpis = out.split("KPIs:")[1].split("SUCCEEDED")[0]
    assert "✗" not in kpis and "✓ kpi success_rate = 1 (target ≥ 1.0)" in kpis
    assert "breached" not in out


def test_rb_test_runs_are_kept_apart_and_replay_all_counts_real_runs(rb: Rb, tmp_path: Path) -> None:
    pack = REPO / "runbooks/rb-000-hello"
    code, out, _ = rb("test", str(pack))
    assert code == 0 and "PASS 3/3" in out
    test_ids = re.findall(r"execution ([0-9a-f]{32})", out)
    assert len(test_ids) == 3
    home = tmp_path / "home"
    assert sorted(p.stem for p in (home / "test-executions").glob("*.jsonl")) == sorted(test_ids)
    assert not (home / "executions").exists()

    code, out, _ = rb("run", "rb-000-hello", "--fixture", str(pack / "fixtures/ok.yaml"))
    real = execution_id(out)
    code, out, _ = rb("replay", "--all", "--runbook", "rb-000-hello")
    assert code == 0, out
    assert re.findall(r"replaying execution ([0-9a-f]{32})", out) == [real]
    assert out.rstrip().endswith("1/1 replays verified")
    code, out, _ = rb("replay", test_ids[0][:12])  # a test run is still found by its id
    assert code == 0 and "REPLAY VERIFIED" in out and "rb test log" in out


def test_rb_graph_mermaid_and_dot(rb: Rb) -> None:
    code, out, _ = rb("graph", "rb-000-hello")
    assert code == 0 and out.startswith("flowchart TD\n")
    assert re.search(r's\d+\["report \(transform\)"\]', out)
    assert len(re.findall(r"s\d+ --> s\d+", out)) == 4  # kernel, load, pause -> report -> check
    code, out, _ = rb("graph", "rb-000-hello", "--format", "dot")
    assert code == 0 and out.startswith('digraph "rb-000-hello" {')
    assert '"report" -> "check";' in out and '"kernel" -> "report";' in out


def test_rb_new_scaffolds_a_valid_runbook_whose_pack_passes(rb: Rb, tmp_path: Path) -> None:
    code, out, err = rb("new", "rb-900-scaffold", "--dir", str(tmp_path / "books"), "--owner", "team-x")
    assert code == 0, err
    base = tmp_path / "books" / "rb-900-scaffold"
    assert "owner: team-x" in (base / "runbook.yaml").read_text()
    assert rb("validate", str(base))[0] == 0
    code, out, _ = rb("test", str(base))
    assert code == 0 and "PASS 2/2" in out, out
    code, _, err = rb("new", "rb-900-scaffold", "--dir", str(tmp_path / "books"))
    assert code == 2 and "already exists" in err
    code, _, err = rb("new", "Bad_Id", "--dir", str(tmp_path / "books"))
    assert code == 2 and "lower-case" in err


def test_a_fixture_expecting_an_unknown_kpi_fails_naming_the_recorded_ones(rb: Rb, tmp_path: Path) -> None:
    fixture = tmp_path / "fixture.yaml"
    fixture.write_text(
        (REPO / "runbooks/rb-000-hello/fixtures/ok.yaml")
        .read_text()
        .replace("expect:\n", "expect:\n  kpis: {max_error_rate: true}\n", 1)
    )
    code, out, _ = rb("test", "rb-000-hello", "--fixture", str(fixture))
    assert code == 1 and "FAIL" in out
    line = next(x for x in out.splitlines() if "kpi max_error_rate" in x)
    assert "✗" in line and "no such KPI was recorded" in line and "error_rate" in line


def test_rb_run_honours_the_runbooks_concurrency(rb: Rb, tmp_path: Path) -> None:
    """`defaults.concurrency` limits a local run (RB_MAX_CONCURRENCY only caps it)."""
    waits = "\n".join(f"  - {{id: w{i}, type: wait, inputs: {{seconds: 1}}}}" for i in range(3))
    for limit, expected_overlap in ((1, False), (3, True)):
        runbook = tmp_path / f"c{limit}.yaml"
        runbook.write_text(
            f"id: c{limit}\nname: c\nversion: 1.0.0\nowner: me\nlegal_basis: test\n"
            f"defaults: {{concurrency: {limit}}}\nsteps:\n{waits}\n"
        )
        fixture = tmp_path / "clock.yaml"
        fixture.write_text('clock: "2025-01-01T00:00:00Z"\n')
        code, out, _ = rb("run", str(runbook), "--fixture", str(fixture))
        assert code == 0, out
        log = (tmp_path / "home" / "executions" / f"{execution_id(out)}.jsonl").read_text()
        # `wait` steps are the coordinator's timers: `step.waiting` is their start.
        types = [t for t in re.findall(r'"type":\s*"(step\.waiting|step\.succeeded)"', log)]
        overlap = types[:2] == ["step.waiting", "step.waiting"]
        assert overlap is expected_overlap, (limit, types)
