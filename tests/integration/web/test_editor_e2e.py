"""The runbook editor in real Chromium against a real stack (issue 18): a 4-step runbook built in
the graph editor only, saved as a draft, its stored YAML valid, approved by a second identity and
run; a step typed into the YAML (with a comment) shows in the graph and the comment survives a
graph edit; a cycle drawn in the graph is marked on its edges and in the YAML at once."""

from __future__ import annotations

import uuid

import pytest
from web_support import Console, Stack

from rb_common.validator import validate_text

pytestmark = pytest.mark.integration


def node(step: str) -> str:
    return f"[data-testid=graph-editor] .step-node[data-step='{step}']"


def yaml_text(console: Console) -> str:
    return str(console.page.evaluate("() => document.querySelector('.cm-content').innerText"))


def open_editor(console: Console, stack: Stack, fragment: str = "#/editor") -> None:
    console.sign_in(stack.key("web-author", "author"))
    console.go(fragment)
    console.page.wait_for_selector("[data-testid=palette] button:has-text('+ transform')")


def select(console: Console, step: str) -> None:
    console.page.click(node(step))
    console.page.wait_for_selector(f"[data-testid=step-panel] h2:has-text('{step}')")


def depend(console: Console, step: str, upstream: str) -> None:
    select(console, step)
    console.page.select_option("[data-testid=step-panel] select", upstream)
    console.page.click("[data-testid=step-panel] button:has-text('Add dependency')")


def drag_edge(console: Console, source: str, target: str) -> None:
    page = console.page
    start = page.locator(f".react-flow__node[data-id='{source}'] .react-flow__handle.source").bounding_box()
    end = page.locator(f".react-flow__node[data-id='{target}'] .react-flow__handle.target").bounding_box()
    assert start and end
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=8)
    page.mouse.up()


def test_build_four_steps_in_the_graph_save_approve_and_run(console: Console, stack: Stack) -> None:
    page = console.page
    runbook_id = f"web-built-{uuid.uuid4().hex[:6]}"
    open_editor(console, stack)
    page.fill("input[name=runbook-id]", runbook_id)
    page.fill("input[name=runbook-name]", "Built in the graph")
    for kind in ("transform", "transform", "wait", "assert"):
        page.click(f"[data-testid=palette] button:has-text('+ {kind}')")
    for step in ("transform_1", "transform_2", "wait_1", "assert_1"):
        page.wait_for_selector(node(step))
    select(console, "wait_1")
    page.fill("[data-testid=step-panel] input[name=seconds]", "0")
    page.keyboard.press("Enter")
    select(console, "assert_1")
    page.fill("[data-testid=step-panel] input[name=that]", "true")
    page.keyboard.press("Enter")
    # The forms' edits have landed (a re-render mid-drag would drop the connection).
    page.wait_for_function("() => document.querySelector('.cm-content').innerText.includes('that: true')")
    page.wait_for_selector("[data-testid=graph-editor][data-fitted='4:0']")  # laid out, in view
    drag_edge(console, "transform_1", "transform_2")  # an edge drawn by drag
    page.wait_for_selector(
        ".react-flow__edge[data-testid='rf__edge-transform_1->transform_2']", state="attached"
    )
    depend(console, "wait_1", "transform_2")
    depend(console, "assert_1", "wait_1")
    page.wait_for_selector(".react-flow__edge[data-testid='rf__edge-wait_1->assert_1']", state="attached")
    page.wait_for_selector("[data-testid=validity]:has-text('valid')")
    assert page.locator(".react-flow__edge").count() == 3
    assert page.locator(".react-flow__minimap").count() == 1
    console.shot("editor-built")
    page.click("button:has-text('Save as draft')")
    page.wait_for_selector(f"[data-testid=saved]:has-text('saved {runbook_id} revision 1 (DRAFT)')")

    stored = stack.http.get(f"{stack.base}/runbooks/{runbook_id}").json()
    assert stored["status"] == "DRAFT"
    runbook, issues = validate_text(stored["source"], "stored.yaml")
    assert runbook is not None and [i for i in issues if i.level == "error"] == []
    assert [s.id for s in runbook.steps] == ["transform_1", "transform_2", "wait_1", "assert_1"]
    assert runbook.step("assert_1").depends_on == ["wait_1"]
    # The author cannot approve it (four eyes); a second identity does, then it runs.
    approved = stack.http.post(f"{stack.base}/runbooks/{runbook_id}/approve")
    assert approved.status_code == 200, approved.text
    execution_id = stack.execute(runbook_id)
    assert stack.wait_status(execution_id, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    page.click("button:has-text('Dry run')")
    page.wait_for_selector("[data-testid=plan] [data-step='assert_1']")


BASE = """id: {id}
name: Edited
version: 1.0.0
owner: web-tests
legal_basis: tests
steps:
  - id: first
    type: transform
    inputs: {{a: 1}}
  - id: second
    type: transform
    depends_on: [first]
    inputs: {{b: 2}}
"""


def test_a_step_typed_in_the_yaml_shows_in_the_graph_and_its_comment_survives(
    console: Console, stack: Stack
) -> None:
    page = console.page
    runbook_id = stack.register(BASE.format(id=f"web-edit-{uuid.uuid4().hex[:6]}"))
    open_editor(console, stack, f"#/editor/{runbook_id}")
    page.wait_for_selector(node("second"))
    added = (
        BASE.format(id=runbook_id)
        + "  # probes the host once more\n  - id: extra\n    type: transform\n    inputs: {c: 3}\n"
    )
    page.click(".cm-content")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(added)
    page.wait_for_selector(node("extra"))
    assert "# probes the host once more" in yaml_text(console)
    depend(console, "extra", "second")  # a graph edit
    page.wait_for_selector(".react-flow__edge[data-testid='rf__edge-second->extra']", state="attached")
    text = yaml_text(console)
    assert "# probes the host once more" in text and "depends_on: [second]" in text, text
    page.click("button:has-text('Diff with approved')")
    page.wait_for_selector("[data-testid=diff] .add:has-text('id: extra')")
    console.shot("editor-yaml-edit")
    # Completion from the schema: step types after `type:`.
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("  - id: more\n    type: tra")
    page.wait_for_selector(".cm-tooltip-autocomplete li:has-text('transform')")


def test_a_cycle_is_marked_on_the_edge_and_in_the_yaml_at_once(console: Console, stack: Stack) -> None:
    page = console.page
    runbook_id = stack.register(BASE.format(id=f"web-cycle-{uuid.uuid4().hex[:6]}"))
    open_editor(console, stack, f"#/editor/{runbook_id}")
    page.wait_for_selector("[data-testid=graph-editor][data-fitted='2:1']")
    assert page.locator(".react-flow__edge.cycle-edge").count() == 0
    drag_edge(console, "second", "first")  # first now waits for second: a cycle
    page.wait_for_selector(
        ".react-flow__edge.cycle-edge[data-testid='rf__edge-second->first']", state="attached"
    )
    # In the same render: both edges of the cycle, the diagnostic line and the YAML's lint mark.
    assert page.locator(".react-flow__edge.cycle-edge").count() == 2
    assert "dependency cycle" in page.locator("[data-testid=diagnostics]").inner_text()
    page.wait_for_selector(".cm-lintRange-error")
    assert "depends_on: [second]" in yaml_text(console)
    page.wait_for_selector("[data-testid=validity]:has-text('error')")
    console.shot("editor-cycle")
