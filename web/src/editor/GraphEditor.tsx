// The graph view of the YAML: nodes and edges come from the server's reading of the text
// (graph_of), laid out automatically (../dag); every change is a GraphEdit the server applies
// to the YAML. Edges on a cycle carry the class `cycle-edge`.
import {
  Background,
  Controls,
  Handle,
  MiniMap,
  Position,
  ReactFlow,
  useReactFlow,
  type Connection,
  type Edge,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { memo, useEffect, useMemo, useState } from "react";
import { layout, TYPE_ICONS } from "../dag";
import type { Checked, GraphEdit } from "./types";

interface EditorNodeData extends Record<string, unknown> {
  label: string;
  type: string;
  bad: boolean;
}

const EditorNode = memo(function EditorNode({ data, selected }: NodeProps<Node<EditorNodeData>>) {
  return (
    <div className={`step-node${data.bad ? " status-failed" : ""}${selected ? " selected" : ""}`} data-step={data.label}>
      <Handle type="target" position={Position.Top} />
      <span className="step-icon" aria-hidden>
        {TYPE_ICONS[data.type] ?? "•"}
      </span>
      <span className="step-text">
        <span className="step-id">{data.label}</span>
        <span className="step-type">{data.type}</span>
      </span>
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
});

const nodeTypes = { editor: EditorNode };

/** Auto-layout moves every node when steps come and go: fit them in view again. */
function FitOnChange({ shape, onFitted }: { shape: string; onFitted: (shape: string) => void }) {
  const flow = useReactFlow();
  useEffect(() => {
    const timer = setTimeout(() => {
      flow.fitView({ maxZoom: 1 });
      onFitted(shape);
    }, 60);
    return () => clearTimeout(timer);
  }, [shape, flow, onFitted]);
  return null;
}

export function GraphEditor({
  checked,
  selected,
  onSelect,
  onEdit,
}: {
  checked: Checked;
  selected: string | null;
  onSelect: (id: string | null) => void;
  onEdit: (edit: GraphEdit) => void;
}) {
  const { nodes, edges } = useMemo(() => {
    const g = checked.graph;
    const steps = g.nodes.map((n) => ({
      id: n.id,
      type: n.type,
      depends_on: g.edges.filter((e) => e.to === n.id).map((e) => e.from),
    }));
    const laid = layout(steps);
    const cycle = new Set(g.cycle_edges.map((e) => `${e.from}->${e.to}`));
    const badSteps = new Set(checked.issues.filter((i) => i.level === "error" && i.step).map((i) => i.step));
    const nodes: Node<EditorNodeData>[] = laid.nodes.map((n) => ({
      ...n,
      type: "editor",
      selected: n.id === selected,
      data: { label: n.id, type: String(n.data.type), bad: badSteps.has(n.id) },
    }));
    const edges: Edge[] = laid.edges.map((e) => ({
      ...e,
      className: cycle.has(e.id) ? "cycle-edge" : undefined,
      label: cycle.has(e.id) ? "cycle" : undefined,
      animated: cycle.has(e.id),
    }));
    return { nodes, edges };
  }, [checked, selected]);

  const shape = `${nodes.length}:${edges.length}`;
  const [fitted, setFitted] = useState("");
  return (
    // data-fitted: the shape (steps:edges) last fitted in view, for tests to wait on.
    <div className="dag graph-editor" data-testid="graph-editor" data-steps={nodes.length} data-fitted={fitted}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ maxZoom: 1 }}
        minZoom={0.05}
        nodesDraggable={false}
        nodesConnectable
        edgesFocusable
        deleteKeyCode={["Delete", "Backspace"]}
        proOptions={{ hideAttribution: true }}
        onConnect={(c: Connection) => c.source && c.target && onEdit({ op: "add_edge", from: c.source, to: c.target })}
        onEdgesDelete={(gone) => gone.forEach((e) => onEdit({ op: "remove_edge", from: e.source, to: e.target }))}
        onNodesDelete={(gone) => gone.forEach((n) => onEdit({ op: "remove_step", id: n.id }))}
        onNodeClick={(_, node) => onSelect(node.id)}
        onPaneClick={() => onSelect(null)}
      >
        <FitOnChange shape={shape} onFitted={setFitted} />
        <Background />
        <MiniMap pannable zoomable />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
