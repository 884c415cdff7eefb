// Calls to the rb API with the API key the user signed in with (sessionStorage: gone with the
// tab, never in a URL), sent as `Authorization: Bearer`.

const KEY = "rb.apiKey";
export const SIGNED_OUT = "rb-signed-out";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

export function authHeaders(key = storedKey()): Record<string, string> {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

type Init = Omit<RequestInit, "body"> & { json?: unknown; key?: string };

export async function api<T>(path: string, init: Init = {}): Promise<T> {
  const { json, key, ...rest } = init;
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders(key ?? storedKey()) };
  let body: BodyInit | undefined;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const url = path.startsWith("/console/") ? path : `/api/v1${path}`;
  const response = await fetch(url, { ...rest, headers, body });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail ?? problem.title ?? detail;
    } catch {
      /* not JSON */
    }
    if (response.status === 401 && key === undefined) window.dispatchEvent(new Event(SIGNED_OUT));
    throw new ApiError(response.status, `${response.status}: ${detail}`);
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export interface Identity {
  actor: string;
  roles: string[];
}

export const can = (who: Identity | null, role: string): boolean => !!who && who.roles.includes(role);

export interface RunbookSummary {
  id: string;
  name?: string;
  version?: string;
  revision: number;
  status: string;
  owner?: string | null;
  description?: string | null;
  tags: string[];
  team?: string | null;
  updated_at?: string;
}

export interface RunbookDetail extends RunbookSummary {
  definition: Definition | null;
  source: string | null;
}

export interface StepDef {
  id: string;
  type: string;
  description?: string;
  depends_on?: string[];
  rollback?: { type: string } | null;
  on_failure?: string;
  inputs?: Record<string, unknown>;
}

export interface Definition {
  id: string;
  name?: string;
  legal_basis?: string;
  parameters?: JsonSchema;
  steps: StepDef[];
  kpis?: Record<string, unknown>;
  assumptions?: unknown[];
}

export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  default?: unknown;
  description?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  items?: JsonSchema;
}

export interface Page<T> {
  items: T[];
  total?: number;
}

export interface ExecutionSummary {
  id: string;
  runbook_id: string | null;
  runbook_version?: string;
  status: string;
  requested_at?: string;
  started_at?: string | null;
  completed_at?: string | null;
  actor_id?: string | null;
  reason?: string | null;
}

export interface StepView {
  id: string;
  status: string;
  attempts: number;
  started_at?: string | null;
  completed_at?: string | null;
  outputs?: unknown;
  error?: unknown;
}

export interface ExecutionDetail extends ExecutionSummary {
  steps: StepView[];
  trigger?: Record<string, unknown>;
  kpis?: { kpis?: Record<string, { value?: unknown; target?: unknown; ok?: boolean }> } | null;
}

export interface StepLog {
  step_id: string;
  status: string;
  attempts: number;
  inputs?: unknown;
  outputs?: unknown;
  errors?: unknown[];
  rollback_status?: string | null;
}

export interface Approval {
  id: string;
  execution_id: string;
  step_id: string;
  runbook_id: string;
  status: string;
  prompt?: string;
  approvers?: string[];
  require_comment?: boolean;
  requested_by?: string;
  requested_at?: string;
  timeout_at?: string;
}

export interface ReplayReport {
  execution_id: string;
  source?: string;
  verified: boolean;
  deviations: unknown[];
}
