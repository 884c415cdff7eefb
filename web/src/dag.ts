// A runbook's DAG as positioned nodes and edges: steps, their dependencies, branch sides and
// rollback (compensation) blocks, laid out top to bottom by dagre.
import dagre from "@dagrejs/dagre";
import type { Edge, Node } from "@xyflow/react";
import type { StepDef } from "./api";

export const NODE_WIDTH = 190;
export const NODE_HEIGHT = 52;

export const TYPE_ICONS: Record<string, string> = {
  shell: "⌘",
  http: "⇄",
  data_fetch: "⇩",
  api_call: "⇄",
  transform: "ƒ",
  schema_check: "✓",
  assertion: "‼",
  sql_query: "⛁",
  wait: "⏱",
  wait_for_event: "⌛",
  approval: "✋",
  branch: "⑂",
  for_each: "↻",
  runbook: "▣",
  notify: "✉",
  ai: "✦",
  metrics_publish: "📈",
};

export interface StepNodeData extends Record<string, unknown> {
  label: string;
  type: string;
  status: string;
  rollback: boolean;
}

export function layout(steps: StepDef[]): { nodes: Node<StepNodeData>[]; edges: Edge[] } {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 46, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(steps.map((s) => s.id));
  const edges: Edge[] = [];
  for (const step of steps) {
    graph.setNode(step.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
    for (const upstream of step.depends_on ?? []) {
      if (!ids.has(upstream)) continue;
      graph.setEdge(upstream, step.id);
      edges.push({ id: `${upstream}->${step.id}`, source: upstream, target: step.id });
    }
    if (step.rollback) {
      const id = `${step.id}.rollback`;
      graph.setNode(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
      graph.setEdge(step.id, id);
      edges.push({
        id: `${step.id}~>${id}`,
        source: step.id,
        target: id,
        label: "rollback",
        className: "rollback-edge",
        style: { strokeDasharray: "5 4" },
      });
    }
  }
  dagre.layout(graph);
  const nodes: Node<StepNodeData>[] = [];
  for (const id of graph.nodes()) {
    const at = graph.node(id);
    const step = steps.find((s) => s.id === id);
    const rollback = !step;
    const type = step ? step.type : (steps.find((s) => `${s.id}.rollback` === id)?.rollback?.type ?? "");
    nodes.push({
      id,
      type: "step",
      position: { x: at.x - NODE_WIDTH / 2, y: at.y - NODE_HEIGHT / 2 },
      data: { label: id, type, status: "", rollback },
      width: NODE_WIDTH,
      height: NODE_HEIGHT,
      draggable: false,
      connectable: false,
    });
  }
  return { nodes, edges };
}
