"""The DAG a runbook's YAML text draws, even when it does not validate (pure): steps with their
type and line, `depends_on` edges, and which edges lie on a cycle. The console's graph editor
shows it; the validator (rb_common.validator) says what is wrong."""

from __future__ import annotations

from typing import Any

import networkx as nx

from rb_common.loader import parse_yaml


def graph_of(text: str) -> dict[str, Any]:
    try:
        data, lines = parse_yaml(text, "<editor>")
    except Exception:  # not YAML yet (mid-typing): no graph, the diagnostics say why
        return {"nodes": [], "edges": [], "cycle_edges": []}
    steps = data.get("steps") if isinstance(data, dict) else None
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict) or not isinstance(step.get("id"), str):
            continue
        inputs = step.get("inputs")
        nodes.append(
            {
                "id": step["id"],
                "type": str(step.get("type", "")),
                "line": lines.get(("steps", i)),
                "inputs": inputs if isinstance(inputs, dict) else {},
            }
        )
        deps = step.get("depends_on")
        for dep in [deps] if isinstance(deps, str) else deps if isinstance(deps, list) else []:
            if isinstance(dep, str):
                edges.append({"from": dep, "to": step["id"]})
    known = {n["id"] for n in nodes}
    edges = [e for e in edges if e["from"] in known]
    g = nx.DiGraph([(e["from"], e["to"]) for e in edges])
    on_cycle: set[tuple[str, str]] = set()
    for component in nx.strongly_connected_components(g):
        if len(component) > 1:
            on_cycle |= {(u, v) for u, v in g.subgraph(component).edges}
    on_cycle |= {(u, v) for u, v in g.edges if u == v}
    cycle_edges = [e for e in edges if (e["from"], e["to"]) in on_cycle]
    return {"nodes": nodes, "edges": edges, "cycle_edges": cycle_edges}
