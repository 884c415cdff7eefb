"""rb_common.loader: YAML -> model, with file and line in every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rb_common.errors import RunbookLoadError
from rb_common.loader import load_runbook, load_runbook_text, parse_yaml

MINIMAL = """\
id: rb-min
name: Minimal
steps:
  - id: only
    type: transform
"""


def load_error(text: str) -> RunbookLoadError:
    with pytest.raises(RunbookLoadError) as info:
        load_runbook_text(text, "runbooks/x.yaml")
    return info.value


def test_minimal_runbook_and_defaults() -> None:
    runbook, lines = load_runbook_text(MINIMAL, "x.yaml")
    assert runbook.id == "rb-min"
    assert runbook.version == "0.1.0"
    step = runbook.steps[0]
    assert (step.on_failure, step.depends_on, step.inputs) == ("abort", [], {})
    assert runbook.timeout_for(step) == 60.0
    assert lines[("steps", 0)] == 4
    assert lines[("steps", 0, "type")] == 5


def test_unknown_top_level_key_has_its_line() -> None:
    err = load_error("id: rb-x\nname: X\nowner: me\ndescripton: typo\nsteps: [{id: a, type: transform}]\n")
    assert err.path == "runbooks/x.yaml"
    assert err.line == 4
    assert "unknown key 'descripton'" in err.message
    assert str(err).startswith("runbooks/x.yaml:4: ")


def test_unknown_step_key_has_its_line_and_step() -> None:
    err = load_error(MINIMAL + "    inptus: {a: 1}\n")
    assert err.line == 6
    assert err.message == "steps[0] (only).inptus: unknown key 'inptus'"


def test_unknown_nested_key() -> None:
    err = load_error(MINIMAL + "    retry: {max_attempts: 2, max_attempt: 3}\n")
    assert err.line == 6
    assert "steps[0] (only).retry.max_attempt: unknown key 'max_attempt'" in err.message


def test_yaml_syntax_error_has_a_line() -> None:
    err = load_error("id: rb-x\nname: X\nsteps:\n  - id: a\n    type: [transform\n")
    assert err.message.startswith("invalid YAML:")
    assert err.line is not None and err.line >= 5


def test_tab_indentation_is_a_yaml_error() -> None:
    err = load_error("id: rb-x\nname: X\n\tsteps: []\n")
    assert err.line == 3
    assert "invalid YAML" in err.message


def test_duplicate_keys_are_rejected_with_the_line() -> None:
    err = load_error("id: rb-x\nname: X\nname: Y\nsteps: [{id: a, type: transform}]\n")
    assert err.line == 3
    assert "duplicate key 'name'" in err.message


def test_duplicate_keys_inside_a_step() -> None:
    err = load_error(MINIMAL + "    inputs: {a: 1, a: 2}\n")
    assert err.line == 6
    assert "duplicate key 'a'" in err.message


def test_unsafe_tags_are_rejected() -> None:
    err = load_error("id: rb-x\nname: !!python/object/apply:os.system [echo hi]\nsteps: []\n")
    assert err.line == 2
    assert "invalid YAML" in err.message


def test_log_and_continue_means_continue() -> None:
    runbook, _ = load_runbook_text(MINIMAL + "    on_failure: log_and_continue\n")
    assert runbook.steps[0].on_failure == "continue"


def test_bad_on_failure() -> None:
    err = load_error(MINIMAL + "    on_failure: shrug\n")
    assert err.line == 6
    assert "on_failure" in err.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("7", 7.0)],
)
def test_durations(text: str, seconds: float) -> None:
    runbook, _ = load_runbook_text(
        MINIMAL + f"    timeout: {text}\n    retry: {{initial_delay: {text}, max_delay: {text}}}\n"
    )
    step = runbook.steps[0]
    assert step.timeout == seconds
    retry = runbook.retry_for(step)
    assert (retry.initial_delay, retry.max_delay) == (seconds, seconds)


@pytest.mark.parametrize("text", ["5 weeks", "-1", "1d", "true", "fast"])
def test_bad_durations(text: str) -> None:
    err = load_error(MINIMAL + f"    timeout: {text}\n")
    assert err.line == 6
    assert "steps[0] (only).timeout" in err.message


def test_retry_merges_over_defaults() -> None:
    runbook, _ = load_runbook_text(
        "id: rb-x\nname: X\ndefaults: {retry: {max_attempts: 3, max_delay: 10s}, timeout: 5m}\n"
        "steps:\n  - {id: a, type: transform, retry: {max_attempts: 5}}\n"
    )
    retry = runbook.retry_for(runbook.steps[0])
    assert (retry.max_attempts, retry.max_delay) == (5, 10.0)
    assert runbook.timeout_for(runbook.steps[0]) == 300.0


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "01.0.0", "latest"])
def test_bad_semver(version: str) -> None:
    err = load_error(f"id: rb-x\nname: X\nversion: '{version}'\nsteps: [{{id: a, type: transform}}]\n")
    assert err.line == 3
    assert f"version {version!r} is not semver" in err.message


@pytest.mark.parametrize("version", ["1.0.0", "0.1.0", "2.10.3-rc.1", "1.0.0+build.5"])
def test_good_semver(version: str) -> None:
    runbook, _ = load_runbook_text(
        f"id: rb-x\nname: X\nversion: {version}\nsteps: [{{id: a, type: transform}}]\n"
    )
    assert runbook.version == version


@pytest.mark.parametrize("bad_id", ["RB-Upper", "rb_underscore", "-leading", "has space", "'x' "])
def test_bad_runbook_id(bad_id: str) -> None:
    err = load_error(f"id: {bad_id!r}\nname: X\nsteps: [{{id: a, type: transform}}]\n")
    assert err.line == 1
    assert err.message.startswith("id: ")


def test_bad_step_id() -> None:
    err = load_error("id: rb-x\nname: X\nsteps:\n  - id: 'bad id'\n    type: transform\n")
    assert err.line == 4
    assert "steps[0] (bad id).id" in err.message


def test_missing_required_keys() -> None:
    err = load_error("id: rb-x\nsteps: [{id: a, type: transform}]\n")
    assert "missing required key 'name'" in err.message
    err = load_error("id: rb-x\nname: X\nsteps: []\n")
    assert err.line == 3
    assert "steps" in err.message


def test_top_level_must_be_a_mapping() -> None:
    for text in ("- a\n- b\n", "", "just text\n"):
        err = load_error(text)
        assert err.line == 1
        assert "a runbook is a YAML mapping at the top level" in err.message


def test_assumptions_in_both_shapes() -> None:
    as_list = load_runbook_text(MINIMAL + "assumptions:\n  - ready: true\n  - small: '${params.n < 5}'\n")
    as_map = load_runbook_text(MINIMAL + "assumptions: {ready: true, small: '${params.n < 5}'}\n")
    for runbook, _ in (as_list, as_map):
        assert [(a.name, a.expect) for a in runbook.assumptions] == [
            ("ready", True),
            ("small", "${params.n < 5}"),
        ]
    err = load_error(MINIMAL + "assumptions:\n  - {a: 1, b: 2}\n")
    assert "single 'name: expectation' pair" in err.message


def test_trigger_needs_exactly_one_kind() -> None:
    err = load_error(MINIMAL + "triggers:\n  - timezone: UTC\n")
    assert err.line == 7
    assert "exactly one of 'cron' or 'alert'" in err.message


def test_custom_kpis_must_be_expressions_or_numbers() -> None:
    runbook, _ = load_runbook_text(MINIMAL + "kpis: {max_error_rate: 0.1, n: '${1}'}\n")
    assert runbook.kpis.custom == {"n": "${1}"}
    err = load_error(MINIMAL + "kpis: {n: [1, 2]}\n")
    assert "custom KPI 'n'" in err.message


def test_parse_yaml_lines() -> None:
    data, lines = parse_yaml("a:\n  b: [1, 2]\n  c:\n    - x: 1\n", "f.yaml")
    assert data == {"a": {"b": [1, 2], "c": [{"x": 1}]}}
    assert lines[("a", "b")] == 2
    assert lines[("a", "c", 0, "x")] == 4


def test_load_runbook_from_file(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_runbook(path).id == "rb-min"
    with pytest.raises(RunbookLoadError) as info:
        load_runbook(tmp_path / "missing.yaml")
    assert info.value.message == "no such file"
    assert info.value.line is None


def test_snapshot_round_trips() -> None:
    runbook, _ = load_runbook_text(MINIMAL + "    timeout: 2s\n    on_failure: log_and_continue\n")
    snapshot = runbook.snapshot()
    assert snapshot["steps"][0] == {
        "id": "only",
        "type": "transform",
        "timeout": 2.0,
        "on_failure": "continue",
    }
    assert type(runbook).model_validate(snapshot) == runbook
