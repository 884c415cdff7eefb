"""`rb new`: scaffold a runbook with an acceptance pack that passes `rb test` as it is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples
from rb_common.errors import RbError

EXAMPLES = examples(
    "rb new rb-100-cache-flush               # runbooks/rb-100-cache-flush/ (RB_RUNBOOKS_DIR)",
    "rb new my-check --dir /tmp/runbooks --owner team-a",
)

RUNBOOK = """\
id: {id}
name: {id}
version: 0.1.0
owner: {owner}
legal_basis: "Say why this may run: a change policy, a standard change"
assumptions:
  - sane_limit: "${{params.limit <= 100}}"
parameters:
  type: object
  additionalProperties: false
  properties:
    target: {{type: string, default: "example"}}
    limit: {{type: integer, default: 10, minimum: 1}}
kpis:
  max_duration_seconds: 60
  min_success_rate: 1.0
defaults:
  retry: {{max_attempts: 2, initial_delay: 1s}}
  timeout: 30s
steps:
  - id: plan
    type: transform
    description: What would be done (replace with data_fetch, shell, api_call ... steps)
    inputs:
      target: "${{params.target}}"
      batches: "${{(params.limit + 4) // 5}}"
    outputs: {{target: "$.target", batches: "$.batches"}}
  - id: check
    type: assert
    depends_on: [plan]
    inputs:
      that: "${{steps.plan.outputs.batches >= 1}}"
      message: at least one batch
"""

ACCEPTANCE = """\
runbook: runbook.yaml
scenarios:
  - name: plans the default target
    fixture: fixtures/happy.yaml
  - name: refuses an unreasonable limit
    fixture: fixtures/too-large.yaml
"""

HAPPY = """\
params: {target: example, limit: 10}
clock: "2025-01-01T00:00:00Z"
expect:
  status: SUCCEEDED
  steps:
    plan: {outputs: {target: example, batches: 2}}
"""

TOO_LARGE = """\
params: {limit: 1000}
clock: "2025-01-01T00:00:00Z"
expect:
  status: ABORTED
  assumptions: {sane_limit: false}
  steps: {plan: SKIPPED, check: SKIPPED}
"""


def new(
    runbook_id: Annotated[str, typer.Argument(metavar="ID", help="the new runbook's id ([a-z0-9-]+)")],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", metavar="DIR", help="where to create it (default: RB_RUNBOOKS_DIR)"),
    ] = None,
    owner: Annotated[str, typer.Option(metavar="TEAM", help="the owner recorded in the runbook")] = "me",
) -> None:
    """Scaffold DIR/ID/: runbook.yaml, acceptance.yml and fixtures/ — valid, and passing
    `rb test` as generated; edit from there."""
    if not re.fullmatch(r"[a-z0-9-]+", runbook_id):
        raise RbError(f"{runbook_id!r}: a runbook id is lower-case letters, digits and dashes")
    base = (directory or cli_settings().runbooks_dir) / runbook_id
    if base.exists():
        raise RbError(f"{base} already exists")
    (base / "fixtures").mkdir(parents=True)
    (base / "runbook.yaml").write_text(RUNBOOK.format(id=runbook_id, owner=owner), encoding="utf-8")
    (base / "acceptance.yml").write_text(ACCEPTANCE, encoding="utf-8")
    (base / "fixtures" / "happy.yaml").write_text(HAPPY, encoding="utf-8")
    (base / "fixtures" / "too-large.yaml").write_text(TOO_LARGE, encoding="utf-8")
    out = console()
    out.print(f"created {base}/: runbook.yaml, acceptance.yml, fixtures/happy.yaml, fixtures/too-large.yaml")
    out.print(f"next: rb validate {base} && rb test {base}")
