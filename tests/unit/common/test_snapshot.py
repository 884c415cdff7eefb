"""rb_common.snapshot: which files an execution carries, and the one execution.requested builder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rb_common.loader import load_runbook, load_runbook_text
from rb_common.model import Runbook
from rb_common.snapshot import (
    MAX_SNAPSHOT_BYTES,
    SnapshotError,
    file_references,
    registration_body,
    requested_data,
    snapshot_files,
)
from rb_engine.runner import RunRequest

REPO = Path(__file__).resolve().parents[3]
RB001 = REPO / "runbooks" / "rb-001-entity-enrichment"

TEXT = """\
id: files
name: Files
steps:
  - {id: a, type: schema_check, inputs: {entities: [], schema: schemas/a.json}}
  - id: b
    type: api_call
    inputs: {endpoint: "http://x", query: " q/b.graphql "}
    rollback: {type: schema_check, inputs: {document: {}, schema: schemas/r.yaml}}
  - {id: c, type: schema_check, inputs: {entities: [], schema: "${params.schema}"}}
  - {id: d, type: schema_check, inputs: {entities: [], schema: {type: object}}}
  - {id: e, type: api_call, inputs: {endpoint: "http://x", query: "{ inline }"}}
  - {id: f, type: schema_check, inputs: {entities: [], schema: schemas/a.json}}
"""


def runbook(text: str = TEXT) -> Runbook:
    return load_runbook_text(text)[0]


def test_references_follow_what_the_plugins_read() -> None:
    assert file_references(runbook()) == {
        "schemas/a.json": "a",
        "q/b.graphql": "b",
        "schemas/r.yaml": "b.rollback",
    }


def test_own_files_first_then_the_disk_next_to_the_runbook(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/a.json").write_text("{}")
    (tmp_path / "schemas/r.yaml").write_text("type: object\n")
    own = runbook(TEXT + 'files: {schemas/a.json: "{\\"own\\": 1}", unused.txt: x}\n')
    assert snapshot_files(own, tmp_path) == {
        "schemas/a.json": '{"own": 1}',
        "schemas/r.yaml": "type: object\n",
    }
    assert snapshot_files(own, None) == {"schemas/a.json": '{"own": 1}'}  # a registered runbook: no disk


def test_the_snapshot_is_capped(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/a.json").write_text("x" * (MAX_SNAPSHOT_BYTES + 1))
    with pytest.raises(SnapshotError, match=r"over the .* limit .*largest: schemas/a.json"):
        snapshot_files(runbook(), tmp_path)
    with pytest.raises(SnapshotError):
        requested_data(runbook(), params={}, actor="t", files={"schemas/a.json": "x" * MAX_SNAPSHOT_BYTES})


def test_requested_data_records_the_files_once() -> None:
    rb = runbook(TEXT + "files: {schemas/a.json: '{}'}\n")
    data = requested_data(rb, params={"p": 1}, actor="api", trigger={"type": "api"})
    assert data["files"] == {"schemas/a.json": "{}"}
    assert "files" not in data["runbook"]
    assert Runbook.model_validate(data["runbook"]).steps == rb.steps
    assert data["legal_basis"] is None and data["env"] == {} and data["concurrency"] is None
    # Every starter goes through the same builder.
    assert RunRequest(runbook=rb, params={"p": 1}, actor="api", trigger={"type": "api"}).event_data() == data


def test_a_local_runbook_snapshots_its_files_from_its_directory() -> None:
    rb = load_runbook(RB001 / "runbook.yaml")
    data = RunRequest(runbook=rb, base_dir=RB001).event_data()
    assert data["files"] == {"schemas/entity-v2.json": (RB001 / "schemas/entity-v2.json").read_text()}


def test_registration_body_sends_the_referenced_files() -> None:
    body, content_type = registration_body(RB001 / "runbook.yaml")
    assert content_type == "application/json"
    sent = json.loads(body)
    assert sent["runbook"] == (RB001 / "runbook.yaml").read_text()
    assert set(sent["files"]) == {"schemas/entity-v2.json"}
    plain, content_type = registration_body(REPO / "runbooks/rb-000-hello/runbook.yaml")
    assert (
        content_type == "application/yaml"
        and plain == (REPO / "runbooks/rb-000-hello/runbook.yaml").read_bytes()
    )


def test_rb_run_over_the_cap_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/a.json").write_text('{"description": "' + "x" * MAX_SNAPSHOT_BYTES + '"}')
    (tmp_path / "runbook.yaml").write_text(
        "id: big\nname: Big\nsteps:\n  - {id: a, type: schema_check, inputs: {entities: [], schema: schemas/a.json}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", "run", str(tmp_path / "runbook.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "RB_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "300"},
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "over the" in line and "schemas/a.json" in line
