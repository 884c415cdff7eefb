"""rb_common.yaml_edit: graph edits on YAML text keep comments, key order and flow style, and
refuse what does not apply; rb_common.yaml_graph reads the DAG of any text, cycles marked."""

from __future__ import annotations

import pytest

from rb_common.yaml_edit import EditError, apply_edit
from rb_common.yaml_graph import graph_of

TEXT = """\
# a runbook someone wrote by hand
id: t-edit   # keep me
name: Edit
steps:
  - id: a
    type: transform
    inputs: {x: 1}   # flow style stays
  - id: b
    type: transform
    depends_on: a    # a single string
"""


def test_edits_keep_comments_order_and_style() -> None:
    text = apply_edit(
        TEXT, {"op": "add_step", "step": {"id": "c", "type": "wait", "inputs": {"seconds": "5s"}}}
    )
    text = apply_edit(text, {"op": "add_edge", "from": "b", "to": "c"})
    text = apply_edit(text, {"op": "add_edge", "from": "a", "to": "b"})  # already there: no-op
    text = apply_edit(text, {"op": "set_field", "key": "version", "value": "1.2.0"})
    for kept in (
        "# a runbook someone wrote by hand",
        "id: t-edit   # keep me",
        "inputs: {x: 1}   # flow style stays",
    ):
        assert kept in text
    assert text.index("name: Edit") < text.index("version: 1.2.0") < text.index("steps:")
    assert "depends_on: [a]" in text and "depends_on: [b]" in text
    text = apply_edit(text, {"op": "remove_step", "id": "b"})
    assert "id: b" not in text and "depends_on: [b]" not in text
    text = apply_edit(text, {"op": "set_input", "id": "a", "key": "x", "value": None})
    assert "inputs" not in text.split("id: a", 1)[1].split("- id:", 1)[0]


@pytest.mark.parametrize(
    "edit",
    [
        {"op": "nope"},
        {"op": "remove_step", "id": "zz"},
        {"op": "add_edge", "from": "a", "to": "a"},
        {"op": "remove_edge", "from": "b", "to": "a"},
        {"op": "add_step", "step": {"id": "a", "type": "transform"}},
        {"op": "set_field", "key": "steps", "value": "x"},
    ],
)
def test_edits_that_do_not_apply(edit: dict[str, object]) -> None:
    with pytest.raises(EditError):
        apply_edit(TEXT, edit)


def test_not_a_runbook_is_an_edit_error() -> None:
    for text in ("- a list\n", "id: [unclosed\n"):
        with pytest.raises(EditError):
            apply_edit(text, {"op": "set_field", "key": "name", "value": "x"})


def test_the_graph_of_a_text_marks_its_cycle() -> None:
    cyclic = apply_edit(TEXT, {"op": "add_edge", "from": "b", "to": "a"})
    graph = graph_of(cyclic)
    assert [n["id"] for n in graph["nodes"]] == ["a", "b"] and graph["nodes"][1][
        "line"
    ] == 9  # a gained a depends_on line
    assert {(e["from"], e["to"]) for e in graph["cycle_edges"]} == {("a", "b"), ("b", "a")}
    assert graph_of(TEXT)["cycle_edges"] == [] and graph_of("{{{")["nodes"] == []
