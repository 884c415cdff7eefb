import { Background, Controls, Handle, Position, ReactFlow, useNodesState, type Node, type NodeProps } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { memo, useEffect, useMemo } from "react";
import type { StepDef } from "./api";
import { layout, TYPE_ICONS, type StepNodeData } from "./dag";

const StepNode = memo(function StepNode({ data }: NodeProps<Node<StepNodeData>>) {
  const status = data.status.toLowerCase();
  return (
    <div
      className={`step-node status-${status || "none"}${data.rollback ? " rollback" : ""}`}
      data-step={data.label}
      data-status={status}
      title={`${data.label} (${data.type}${status ? `, ${status}` : ""})`}
    >
      <Handle type="target" position={Position.Top} />
      <span className="step-icon" aria-hidden>
        {TYPE_ICONS[data.type] ?? "•"}
      </span>
      <span className="step-text">
        <span className="step-id">{data.label}</span>
        <span className="step-type">
          {data.type}
          {status ? ` · ${status}` : ""}
        </span>
      </span>
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
});

const nodeTypes = { step: StepNode };

export function Dag({
  steps,
  statuses = {},
  onSelect,
}: {
  steps: StepDef[];
  statuses?: Record<string, string>;
  onSelect?: (stepId: string) => void;
}) {
  const graph = useMemo(() => layout(steps), [steps]);
  const [nodes, setNodes, onNodesChange] = useNodesState(graph.nodes);
  useEffect(() => {
    setNodes((current) => {
      const known = current.length === graph.nodes.length && current.every((n, i) => n.id === graph.nodes[i].id);
      const base = known ? current : graph.nodes;
      return base.map((node) => {
        const status = statuses[node.id] ?? "";
        return node.data.status === status ? node : { ...node, data: { ...node.data, status } };
      });
    });
  }, [graph, statuses, setNodes]);
  return (
    <div className="dag" data-testid="dag" data-steps={steps.length}>
      <ReactFlow
        nodes={nodes}
        edges={graph.edges}
        onNodesChange={onNodesChange}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ maxZoom: 1 }}
        minZoom={0.05}
        nodesDraggable={false}
        nodesConnectable={false}
        proOptions={{ hideAttribution: true }}
        onNodeClick={(_, node) => onSelect?.(node.id.replace(/\.rollback$/, ""))}
        onSelectionChange={({ nodes: picked }) => {
          // Keyboard: Tab to a node, Enter or Space selects it (React Flow), and so opens it here.
          if (picked.length === 1) onSelect?.(picked[0].id.replace(/\.rollback$/, ""));
        }}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
