import { useState } from "react";
import { api, can, type ExecutionSummary, type Identity, type Page, type RunbookDetail } from "../api";
import { Dag } from "../Dag";
import { diffLines } from "../diff";
import { ParamForm } from "../ParamForm";
import { go, href } from "../route";
import { Problem, Status, useLoad, when } from "../ui";

interface Versions {
  current_revision: number;
  items: { revision: number; version: string; created_at: string; created_by: string; current: boolean }[];
}
interface Revision {
  revision: number;
  source?: string | null;
  definition?: unknown;
}

const textOf = (r: Revision): string => r.source ?? JSON.stringify(r.definition, null, 2);

export function Runbook({ id, who }: { id: string; who: Identity }) {
  const runbook = useLoad(() => api<RunbookDetail>(`/runbooks/${encodeURIComponent(id)}`), [id]);
  const [tab, setTab] = useState("dag");
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const r = runbook.data;

  async function act(action: string, json?: unknown) {
    setError("");
    setMessage("");
    try {
      await api(`/runbooks/${encodeURIComponent(id)}/${action}`, { method: "POST", json });
      setMessage(`${action}: done`);
      runbook.reload();
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  async function run(params: Record<string, unknown>) {
    const queued = await api<{ execution_id: string }>(`/runbooks/${encodeURIComponent(id)}/execute`, {
      method: "POST",
      json: { params },
    });
    go("executions", queued.execution_id);
  }

  if (!r) return runbook.error ? <Problem error={runbook.error} /> : <p className="muted">Loading…</p>;
  const tabs: [string, string][] = [
    ["dag", "DAG"],
    ["yaml", "YAML"],
    ["versions", "Versions"],
    ["runs", "Runs"],
  ];
  return (
    <section>
      <h1>
        {r.name ?? r.id} <Status value={r.status} />
      </h1>
      <p className="muted">
        <code>{r.id}</code> · v{r.version} (revision {r.revision}) · owner {r.owner ?? "—"}
        {r.tags.map((t) => (
          <span className="tag" key={t}>
            {t}
          </span>
        ))}
      </p>
      {r.description && <p>{r.description}</p>}
      {r.definition?.legal_basis && (
        <p className="small">
          <strong>Legal basis:</strong> {r.definition.legal_basis}
        </p>
      )}
      <div className="actions">
        {can(who, "author") && <a href={href("editor", r.id)}>Edit</a>}
        {can(who, "admin") && r.status !== "APPROVED" && (
          <button type="button" onClick={() => act("approve")}>
            Approve runbook
          </button>
        )}
        {can(who, "admin") && r.status !== "DEPRECATED" && (
          <button type="button" onClick={() => act("deprecate")}>
            Deprecate
          </button>
        )}
      </div>
      {message && <p className="ok">{message}</p>}
      <Problem error={error} />
      <div className="layout-2">
        <div>
          <div role="tablist" className="tabs">
            {tabs.map(([t, label]) => (
              <button type="button" role="tab" key={t} aria-selected={tab === t} onClick={() => setTab(t)}>
                {label}
              </button>
            ))}
          </div>
          {tab === "dag" && r.definition && <Dag steps={r.definition.steps} />}
          {tab === "yaml" && <pre className="yaml">{r.source ?? JSON.stringify(r.definition, null, 2)}</pre>}
          {tab === "versions" && <VersionsView id={id} who={who} onRollback={(rev) => act("rollback", { revision: rev })} />}
          {tab === "runs" && <RunsOf id={id} />}
        </div>
        <aside className="card">
          <h2>Run</h2>
          {r.status !== "APPROVED" && <p className="muted">Only an APPROVED runbook runs.</p>}
          <ParamForm schema={r.definition?.parameters} canRun={can(who, "operator") && r.status === "APPROVED"} onRun={run} />
          {!can(who, "operator") && <p className="muted small">Running needs the operator role.</p>}
        </aside>
      </div>
    </section>
  );
}

function VersionsView({ id, who, onRollback }: { id: string; who: Identity; onRollback: (revision: number) => void }) {
  const versions = useLoad(() => api<Versions>(`/runbooks/${encodeURIComponent(id)}/versions`), [id]);
  const [pair, setPair] = useState<[number, number] | null>(null);
  const diff = useLoad(async () => {
    if (!pair) return null;
    const [a, b] = await Promise.all(pair.map((rev) => api<Revision>(`/runbooks/${encodeURIComponent(id)}/versions/${rev}`)));
    return diffLines(textOf(a), textOf(b));
  }, [id, pair?.[0], pair?.[1]]);
  const items = versions.data?.items ?? [];
  return (
    <div>
      <Problem error={versions.error} />
      <table>
        <thead>
          <tr>
            <th>Revision</th>
            <th>Version</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {items.map((v, index) => (
            <tr key={v.revision}>
              <td>
                {v.revision}
                {v.current && " (current)"}
              </td>
              <td>{v.version}</td>
              <td>
                {when(v.created_at)} by {v.created_by}
              </td>
              <td>
                {index > 0 && (
                  <button type="button" className="small" onClick={() => setPair([items[index - 1].revision, v.revision])}>
                    Diff with {items[index - 1].revision}
                  </button>
                )}
                {!v.current && can(who, "author") && (
                  <button type="button" className="small" onClick={() => onRollback(v.revision)}>
                    Roll back to this
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {diff.data && (
        <pre className="diff">
          {diff.data.map((line, i) => (
            <div key={i} className={line.kind === "+" ? "add" : line.kind === "-" ? "del" : ""}>
              {line.kind} {line.text}
            </div>
          ))}
        </pre>
      )}
    </div>
  );
}

function RunsOf({ id }: { id: string }) {
  const runs = useLoad(() => api<Page<ExecutionSummary>>(`/executions?runbook_id=${encodeURIComponent(id)}&limit=50`), [id]);
  return (
    <ul className="plain">
      {(runs.data?.items ?? []).map((e) => (
        <li key={e.id}>
          <Status value={e.status} /> <a href={href("executions", e.id)}>{e.id}</a> {when(e.requested_at)}
        </li>
      ))}
    </ul>
  );
}
