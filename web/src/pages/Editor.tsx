// The runbook editor (issue 18): a YAML view and a graph view of one text, the YAML the single
// source of truth. Typing validates on the server (issues by line and step, the graph the text
// draws); graph edits go to the server, which edits the YAML keeping comments (ruamel.yaml).
// Save stores a new DRAFT revision; Diff compares with the approved text; Dry run shows the plan.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, authHeaders, can, type Identity, type RunbookDetail } from "../api";
import { diffLines } from "../diff";
import { GraphEditor } from "../editor/GraphEditor";
import { inputsOf, stepTypes, type Checked, type GraphEdit, type Plan, type Schema } from "../editor/types";
import { YamlEditor } from "../editor/YamlEditor";
import { href } from "../route";
import { Problem } from "../ui";

const NEW = "id: new-runbook\nname: New runbook\nversion: 0.1.0\nsteps: []\n";
const EMPTY: Checked = { valid: false, issues: [], graph: { nodes: [], edges: [], cycle_edges: [] } };

async function saveText(id: string | null, text: string): Promise<{ id: string; revision: number; status: string }> {
  const response = await fetch(id ? `/api/v1/runbooks/${encodeURIComponent(id)}` : "/api/v1/runbooks", {
    method: id ? "PUT" : "POST",
    headers: { "Content-Type": "application/yaml", Accept: "application/json", ...authHeaders() },
    body: text,
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status}: ${body.detail ?? body.title ?? response.statusText}`);
  return body;
}

export function Editor({ id, who }: { id: string | null; who: Identity }) {
  const [text, setText] = useState<string | null>(id ? null : NEW);
  const [savedId, setSavedId] = useState<string | null>(id);
  const [approved, setApproved] = useState<string | null>(null);
  const [checked, setChecked] = useState<Checked>(EMPTY);
  const [schema, setSchema] = useState<Schema | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [plan, setPlan] = useState<Plan | null>(null);
  const [showDiff, setShowDiff] = useState(false);
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const seq = useRef(0);

  useEffect(() => {
    api<Schema>("/schema/runbook").then(setSchema, (e) => setError(String(e.message ?? e)));
  }, []);

  useEffect(() => {
    if (!id) return;
    api<RunbookDetail>(`/runbooks/${encodeURIComponent(id)}`).then(
      (r) => {
        const source = r.source ?? "";
        setText(source);
        setApproved(r.status === "APPROVED" ? source : null);
      },
      (e) => setError(String(e.message ?? e)),
    );
  }, [id]);

  // Validate the text as it changes (the newest answer wins).
  useEffect(() => {
    if (text === null) return;
    const mine = ++seq.current;
    const timer = setTimeout(() => {
      api<Checked>("/authoring/validate", { method: "POST", json: { yaml: text } }).then(
        (c) => mine === seq.current && setChecked(c),
        (e) => setError(String(e.message ?? e)),
      );
    }, 250);
    return () => clearTimeout(timer);
  }, [text]);

  // Graph edits apply in order, each to the text the one before left (a blur and a click can
  // send two at once).
  const latest = useRef<string | null>(text);
  latest.current = text;
  const queue = useRef<Promise<void>>(Promise.resolve());
  const ids = useRef<string[]>([]);
  ids.current = checked.graph.nodes.map((n) => n.id);
  const edit = useCallback((change: GraphEdit) => {
    queue.current = queue.current.then(async () => {
      const current = latest.current;
      if (current === null) return;
      setError("");
      if (change.op === "add_step" && !change.step.id) change = { ...change, step: { ...change.step, id: fresh(change.step.type, ids.current) } };
      try {
        const c = await api<Checked>("/authoring/edit", { method: "POST", json: { yaml: current, edit: change } });
        seq.current++;
        latest.current = c.yaml ?? current;
        ids.current = c.graph.nodes.map((n) => n.id);
        setChecked(c);
        setText(latest.current);
      } catch (e) {
        setError(String(e instanceof Error ? e.message : e));
      }
    });
  }, []);

  async function save() {
    if (text === null) return;
    setError("");
    setMessage("");
    try {
      const saved = await saveText(savedId, text);
      setSavedId(saved.id);
      setMessage(`saved ${saved.id} revision ${saved.revision} (${saved.status})`);
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  async function dryRun() {
    setError("");
    try {
      setPlan(await api<Plan>("/authoring/dry-run", { method: "POST", json: { yaml: text, params: {} } }));
    } catch (e) {
      setPlan(null);
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  if (text === null) return error ? <Problem error={error} /> : <p className="muted">Loading…</p>;
  const node = checked.graph.nodes.find((n) => n.id === selected) ?? null;
  const errors = checked.issues.filter((i) => i.level === "error");
  return (
    <section className="editor-page">
      <h1>{savedId ? `Edit ${savedId}` : "New runbook"}</h1>
      <div className="actions">
        <button type="button" onClick={save} disabled={!can(who, "author")}>
          Save as draft
        </button>
        <button type="button" onClick={dryRun}>
          Dry run
        </button>
        <button type="button" onClick={() => setShowDiff((d) => !d)} disabled={approved === null}>
          Diff with approved
        </button>
        {savedId && <a href={href("runbooks", savedId)}>Open runbook</a>}
        <span className={checked.valid ? "ok" : "error"} data-testid="validity">
          {checked.valid ? "valid" : `${errors.length} error(s)`}
        </span>
      </div>
      {message && (
        <p className="ok" data-testid="saved">
          {message}
        </p>
      )}
      <Problem error={error} />
      {!savedId && (
        <div className="actions">
          {(["id", "name"] as const).map((key) => (
            <label key={key}>
              Runbook {key}{" "}
              <input
                name={`runbook-${key}`}
                defaultValue={key === "id" ? "new-runbook" : "New runbook"}
                onBlur={(e) => edit({ op: "set_field", key, value: e.target.value })}
              />
            </label>
          ))}
        </div>
      )}
      <Palette types={stepTypes(schema)} onAdd={edit} />
      <div className="editor-views">
        <div>
          <GraphEditor checked={checked} selected={selected} onSelect={setSelected} onEdit={edit} />
          {node && <StepPanel key={node.id} node={node} schema={schema} others={checked.graph.nodes.map((n) => n.id)} onEdit={edit} />}
        </div>
        <div>
          <YamlEditor value={text} issues={checked.issues} schema={schema} onChange={setText} />
          <ul className="plain small" data-testid="diagnostics">
            {checked.issues.map((i, k) => (
              <li key={k} className={i.level === "error" ? "error" : "warn"}>
                {i.line ? `line ${i.line}: ` : ""}
                {i.step ? `step '${i.step}': ` : ""}
                {i.message}
              </li>
            ))}
          </ul>
        </div>
      </div>
      {showDiff && approved !== null && (
        <pre className="diff" data-testid="diff">
          {diffLines(approved, text).map((line, i) => (
            <div key={i} className={line.kind === "+" ? "add" : line.kind === "-" ? "del" : ""}>
              {line.kind} {line.text}
            </div>
          ))}
        </pre>
      )}
      {plan && <PlanView plan={plan} />}
    </section>
  );
}

/** The first free id `type_N` (named when the edit applies: clicks may queue). */
function fresh(type: string, taken: string[]): string {
  let n = 1;
  while (taken.includes(`${type}_${n}`)) n++;
  return `${type}_${n}`;
}

function Palette({ types, onAdd }: { types: string[]; onAdd: (e: GraphEdit) => void }) {
  return (
    <div className="palette" role="toolbar" aria-label="Step types" data-testid="palette">
      {types.map((type) => (
        <button type="button" className="small" key={type} onClick={() => onAdd({ op: "add_step", step: { id: "", type } })}>
          + {type}
        </button>
      ))}
    </div>
  );
}

function parse(raw: string, schema: Schema): unknown {
  const kinds = JSON.stringify(schema);
  if (raw === "") return null;
  if (/"type":"string"/.test(kinds) && !/"type":"(number|integer|boolean|array|object)"/.test(kinds)) return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function StepPanel({
  node,
  schema,
  others,
  onEdit,
}: {
  node: { id: string; type: string; inputs: Record<string, unknown> };
  schema: Schema | null;
  others: string[];
  onEdit: (e: GraphEdit) => void;
}) {
  const { properties, required } = inputsOf(schema, node.type);
  const [upstream, setUpstream] = useState("");
  return (
    <div className="card step-panel" data-testid="step-panel">
      <h2>
        {node.id} <span className="muted small">{node.type}</span>
      </h2>
      <form onSubmit={(e) => e.preventDefault()}>
        {Object.entries(properties).map(([key, prop]) => {
          const current = node.inputs[key];
          const shown = current === undefined ? "" : typeof current === "string" ? current : JSON.stringify(current);
          return (
            <label key={key} className="field">
              {key}
              {required.includes(key) ? " *" : ""}
              <input
                name={key}
                defaultValue={shown}
                onBlur={(e) => e.target.value !== shown && onEdit({ op: "set_input", id: node.id, key, value: parse(e.target.value, prop) })}
                onKeyDown={(e) => e.key === "Enter" && (e.target as HTMLInputElement).blur()}
              />
            </label>
          );
        })}
      </form>
      <div className="actions">
        <select aria-label="Depends on" value={upstream} onChange={(e) => setUpstream(e.target.value)}>
          <option value="">depends on…</option>
          {others.filter((o) => o !== node.id).map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
        <button type="button" className="small" disabled={!upstream} onClick={() => onEdit({ op: "add_edge", from: upstream, to: node.id })}>
          Add dependency
        </button>
        <button type="button" className="small" onClick={() => onEdit({ op: "remove_step", id: node.id })}>
          Delete step
        </button>
      </div>
    </div>
  );
}

function PlanView({ plan }: { plan: Plan }) {
  return (
    <div className="card" data-testid="plan">
      <h2>Dry run: {plan.runbook_id}</h2>
      <ol>
        {plan.groups.map((group, n) => (
          <li key={n}>
            {group.length > 1 ? "in parallel: " : ""}
            {group.map((sid) => {
              const step = plan.steps.find((s) => s.id === sid)!;
              return (
                <div key={sid} data-step={sid}>
                  <code>{sid}</code> ({step.type}
                  {step.external ? ", external" : ""}) <code className="small">{JSON.stringify(step.inputs)}</code>
                  {step.pending.length > 0 && <span className="muted small"> at run time: {step.pending.join(", ")}</span>}
                </div>
              );
            })}
          </li>
        ))}
      </ol>
    </div>
  );
}
