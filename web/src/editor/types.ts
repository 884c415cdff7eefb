// What /api/v1/authoring/* answers (services/api/rb_api/routes/authoring.py).
export interface Issue {
  level: string;
  line: number | null;
  step: string | null;
  message: string;
  text: string;
}

export interface GraphNode {
  id: string;
  type: string;
  line: number | null;
  inputs: Record<string, unknown>;
}

export interface GraphEdge {
  from: string;
  to: string;
}

export interface Checked {
  valid: boolean;
  issues: Issue[];
  graph: { nodes: GraphNode[]; edges: GraphEdge[]; cycle_edges: GraphEdge[] };
  yaml?: string;
}

export type GraphEdit =
  | { op: "add_step"; step: { id: string; type: string; inputs?: Record<string, unknown> } }
  | { op: "remove_step"; id: string }
  | { op: "add_edge" | "remove_edge"; from: string; to: string }
  | { op: "set_input"; id: string; key: string; value: unknown }
  | { op: "set_field"; key: string; value: string };

export interface PlanStep {
  id: string;
  type: string;
  group: number;
  external: boolean;
  inputs: Record<string, unknown>;
  pending: string[];
}

export interface Plan {
  runbook_id: string;
  groups: string[][];
  steps: PlanStep[];
}

export type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The input properties (and required ones) of a step type, from the runbook JSON Schema. */
export function inputsOf(schema: Schema | null, type: string): { properties: Record<string, Schema>; required: string[] } {
  const rules: Schema[] = schema?.$defs?.Step?.allOf ?? [];
  const rule = rules.find((r) => r.if?.properties?.type?.const === type);
  const inputs = rule?.then?.properties?.inputs ?? {};
  return { properties: inputs.properties ?? {}, required: inputs.required ?? [] };
}

export function stepTypes(schema: Schema | null): string[] {
  return schema?.$defs?.Step?.properties?.type?.enum ?? [];
}
