"""The validator's checks of branch and for_each (rb_common.flow_checks), through `rb validate`'s
own entry point (validate_file)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from rb_common.validator import Issue, validate_file

HEADER = 'id: rb-test\nname: Flow checks\nversion: 1.0.0\nlegal_basis: "Unit tests, no data"\n'


def errors(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "rb.yaml"
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    runbook, issues = validate_file(path)
    assert runbook is not None, [str(i) for i in issues]
    return [i.message for i in issues if isinstance(i, Issue) and i.level == "error"]


def loop(items: object, extra: str = "") -> str:
    return f"""\
    steps:
      - id: loop
        type: for_each
        inputs:
          items: {json.dumps(items)}
          step: {{type: shell, inputs: {{command: [echo, "${{item}}", "n${{index}}"]}}}}{extra}
    """


def test_a_literal_list_over_1000_items_is_refused(tmp_path: Path) -> None:
    assert errors(tmp_path, loop(list(range(1000)))) == []
    assert errors(tmp_path, loop(list(range(1001)))) == [
        "for_each 'items' lists 1001 items, over the cap of 1000"
    ]
    capped = loop(list(range(11)), "\n          max_iterations: 10")
    assert errors(tmp_path, capped) == ["for_each 'items' lists 11 items, over the cap of 10"]


def test_a_computed_list_is_left_to_run_time(tmp_path: Path) -> None:
    body = "parameters: {properties: {hosts: {type: array}}}\n" + textwrap.dedent(loop("${params.hosts}"))
    assert errors(tmp_path, body) == []


def test_the_loop_body_is_checked_like_a_step(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        steps:
          - {id: a, type: for_each, inputs: {items: [1], step: {type: nope}}}
          - {id: b, type: for_each, inputs: {items: [1], step: {type: shell, inputs: {cmd: x}}}}
          - {id: c, type: for_each, inputs: {items: [1], step: {type: branch, inputs: {if: true}}}}
        """,
    )
    assert any("for_each body: unknown step type 'nope'" in e for e in found)
    assert any("for_each body: missing required input 'command'" in e for e in found)
    assert any("a 'branch' step cannot be a loop's body" in e for e in found)


def test_branch_targets_must_exist_and_depend_on_the_branch(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        steps:
          - id: pick
            type: branch
            inputs:
              cases: [{when: "params.x == 1", then: [one, ghost]}]
              else: [other]
          - {id: one, type: transform, depends_on: [pick]}
          - {id: other, type: transform}
        """,
    )
    assert found == [
        "branch names unknown step 'ghost'",
        "step 'other' is on a side of this branch, so it must depend on 'pick'",
    ]


def test_flow_outputs_need_no_declaration(tmp_path: Path) -> None:
    body = textwrap.dedent(loop([1, 2])) + (
        "  - {id: after, type: transform, depends_on: [loop], "
        'inputs: {n: "${steps.loop.outputs.count}", r: "${steps.loop.outputs.results}"}}\n'
    )
    assert errors(tmp_path, body) == []


def test_branch_conditions_are_checked_as_expressions(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        steps:
          - {id: late, type: transform, depends_on: [pick]}
          - id: pick
            type: branch
            inputs:
              cases:
                - {when: "steps.late.status == 'succeeded'", then: []}
                - {when: "nosuch > 1", then: []}
        """,
    )
    assert len(found) == 2, found  # the downstream read, the unknown name
    assert any("'late' is not upstream of 'pick'" in e for e in found)
    assert any("unknown name 'nosuch'" in e for e in found)
