// A runbook's DAG as positioned nodes and edges: steps, their dependencies and rollback
// (compensation) blocks, laid out top to bottom: by dagre up to DAGRE_LIMIT nodes, above it by
// a linear-time layering of our own (dagre's crossing minimisation took 1.6 s for 220 nodes of
// a long chain with skip edges; bench/console_dag.py measures the whole page).
import dagre from "@dagrejs/dagre";
import type { Edge, Node } from "@xyflow/react";
import type { StepDef } from "./api";

export const NODE_WIDTH = 190;
export const NODE_HEIGHT = 52;
export const DAGRE_LIMIT = 60;
const NODE_GAP = 24;
const RANK_GAP = 46;

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
  const ids = new Set(steps.map((s) => s.id));
  const order: string[] = [];
  const parents = new Map<string, string[]>();
  const meta = new Map<string, { type: string; rollback: boolean }>();
  const edges: Edge[] = [];
  for (const step of steps) {
    order.push(step.id);
    meta.set(step.id, { type: step.type, rollback: false });
    const ups = (step.depends_on ?? []).filter((u) => ids.has(u));
    parents.set(step.id, ups);
    for (const upstream of ups) edges.push({ id: `${upstream}->${step.id}`, source: upstream, target: step.id });
  }
  for (const step of steps) {
    if (!step.rollback) continue;
    const id = `${step.id}.rollback`;
    order.push(id);
    meta.set(id, { type: step.rollback.type ?? "", rollback: true });
    parents.set(id, [step.id]);
    edges.push({
      id: `${step.id}~>${id}`,
      source: step.id,
      target: id,
      label: "rollback",
      className: "rollback-edge",
      style: { strokeDasharray: "5 4" },
    });
  }
  const at = order.length <= DAGRE_LIMIT ? withDagre(order, parents) : layered(order, parents);
  const nodes: Node<StepNodeData>[] = order.map((id) => {
    const m = meta.get(id)!;
    const p = at.get(id) ?? { x: 0, y: 0 };
    return {
      id,
      type: "step",
      position: { x: p.x - NODE_WIDTH / 2, y: p.y - NODE_HEIGHT / 2 },
      data: { label: id, type: m.type, status: "", rollback: m.rollback },
      width: NODE_WIDTH,
      height: NODE_HEIGHT,
      draggable: false,
      connectable: false,
    };
  });
  return { nodes, edges };
}

type Points = Map<string, { x: number; y: number }>;

function withDagre(order: string[], parents: Map<string, string[]>): Points {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "TB", nodesep: NODE_GAP, ranksep: RANK_GAP, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const id of order) graph.setNode(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const id of order) for (const up of parents.get(id) ?? []) graph.setEdge(up, id);
  dagre.layout(graph);
  const out: Points = new Map();
  for (const id of order) {
    const n = graph.node(id);
    out.set(id, { x: n.x, y: n.y });
  }
  return out;
}

/** Longest-path ranks, then each rank ordered by the mean position of its parents (one sweep
 *  down), centred: O(nodes + edges), no dummy nodes for long edges. */
export function layered(order: string[], parents: Map<string, string[]>): Points {
  const rank = new Map<string, number>();
  const visiting = new Set<string>();
  const rankOf = (id: string): number => {
    const known = rank.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // a cycle: rb validate refuses them; never loop here
    visiting.add(id);
    let r = 0;
    for (const up of parents.get(id) ?? []) r = Math.max(r, rankOf(up) + 1);
    visiting.delete(id);
    rank.set(id, r);
    return r;
  };
  const ranks: string[][] = [];
  for (const id of order) (ranks[rankOf(id)] ??= []).push(id);
  const slot = new Map<string, number>();
  const index = new Map(order.map((id, i) => [id, i]));
  const out: Points = new Map();
  ranks.forEach((members, r) => {
    const weight = (id: string): number => {
      const ups = (parents.get(id) ?? []).map((u) => slot.get(u) ?? 0);
      return ups.length ? ups.reduce((a, b) => a + b, 0) / ups.length : index.get(id)!;
    };
    const sorted = [...members].sort((a, b) => weight(a) - weight(b) || index.get(a)! - index.get(b)!);
    sorted.forEach((id, i) => {
      const offset = i - (sorted.length - 1) / 2;
      slot.set(id, offset);
      out.set(id, { x: offset * (NODE_WIDTH + NODE_GAP), y: r * (NODE_HEIGHT + RANK_GAP) });
    });
  });
  return out;
}
