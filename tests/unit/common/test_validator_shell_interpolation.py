"""The validator warns where trigger data is interpolated into a shell command string; passing
it through env or as an argv element of its own does not warn."""

from __future__ import annotations

import pytest

from rb_common.loader import load_runbook_text
from rb_common.validator import validate_runbook

HEAD = """\
id: shell-interp
name: Shell interpolation
version: 1.0.0
owner: tests
legal_basis: Tests of the validator
parameters:
  type: object
  properties:
    instance: {type: string}
    fixed: {type: string}
triggers:
  - alert: {source: alertmanager, match: {alertname: X}}
    params: {instance: "${trigger.labels.instance}"}
steps:
"""


def warnings(step: str) -> list[str]:
    runbook, lines = load_runbook_text(HEAD + step)
    return [
        issue.message
        for issue in validate_runbook(runbook, "runbook.yaml", lines)
        if issue.level == "warning" and "trigger data" in issue.message
    ]


@pytest.mark.parametrize(
    "command",
    [
        '[sh, -c, "ping -c1 ${trigger.labels.instance}"]',
        '[sh, -c, "${trigger.labels.instance}"]',  # the whole script is trigger data
        '[bash, -ec, "echo ${params.instance}"]',  # a parameter the trigger fills
        '[/bin/sh, -c, "${params.instance}"]',
        '[curl, "http://${trigger.labels.instance}/health"]',  # not exactly one expression
        '[echo, "--host=${params.instance}"]',
    ],
)
def test_trigger_data_in_a_command_string_warns(command: str) -> None:
    found = warnings(f"  - {{id: s, type: shell, inputs: {{command: {command}}}}}\n")
    assert len(found) == 1, found
    assert "pass it through `env:`" in found[0].lower() or "env:" in found[0]


def test_trigger_data_as_a_shells_stdin_warns() -> None:
    assert warnings('  - {id: s, type: shell, inputs: {command: [sh], stdin: "${trigger.labels.x}"}}\n')


def test_rollback_commands_are_checked_too() -> None:
    step = (
        "  - id: s\n    type: shell\n    inputs: {command: [true]}\n"
        '    rollback: {type: shell, inputs: {command: [sh, -c, "kill ${params.instance}"]}}\n'
    )
    [found] = warnings(step)
    assert found.startswith("rollback ")


@pytest.mark.parametrize(
    "step",
    [
        # through the environment, quoted in the script
        '  - {id: s, type: shell, inputs: {command: [sh, -c, \'ping -c1 "$HOST"\'], env: {HOST: "${trigger.labels.instance}"}}}\n',
        # as an argv element of its own
        '  - {id: s, type: shell, inputs: {command: [ping, -c1, "${params.instance}"]}}\n',
        '  - {id: s, type: shell, inputs: {command: [sh, -c, \'ping -c1 "$1"\', sh, "${trigger.labels.instance}"]}}\n',
        # not trigger data
        '  - {id: s, type: shell, inputs: {command: [sh, -c, "echo ${params.fixed}"]}}\n',
        # not a shell step
        '  - {id: s, type: transform, inputs: {x: "echo ${trigger.labels.instance}"}}\n',
    ],
)
def test_safe_forms_do_not_warn(step: str) -> None:
    assert warnings(step) == []
