import { useMemo, useState } from "react";
import { api, type ExecutionSummary, type Page, type RunbookSummary } from "../api";
import { href } from "../route";
import { Problem, Status, useLoad, when } from "../ui";

interface Stats {
  last?: ExecutionSummary;
  runs: number;
  succeeded: number;
  finished: number;
}

export function Runbooks() {
  const runbooks = useLoad(() => api<Page<RunbookSummary>>("/runbooks?limit=500"), []);
  const runs = useLoad(() => api<Page<ExecutionSummary>>("/executions?limit=500"), []);
  const [query, setQuery] = useState("");
  const [status, setStatus] = useState("");
  const [tag, setTag] = useState("");

  const stats = useMemo(() => {
    const by: Record<string, Stats> = {};
    for (const run of runs.data?.items ?? []) {
      if (!run.runbook_id) continue;
      const s = (by[run.runbook_id] ??= { runs: 0, succeeded: 0, finished: 0 });
      s.last ??= run; // newest first
      s.runs++;
      if (["SUCCEEDED", "FAILED", "ABORTED", "CANCELLED"].includes(run.status)) s.finished++;
      if (run.status === "SUCCEEDED") s.succeeded++;
    }
    return by;
  }, [runs.data]);

  const tags = useMemo(() => [...new Set((runbooks.data?.items ?? []).flatMap((r) => r.tags))].sort(), [runbooks.data]);
  const q = query.trim().toLowerCase();
  const shown = (runbooks.data?.items ?? []).filter(
    (r) =>
      (!status || r.status === status) &&
      (!tag || r.tags.includes(tag)) &&
      (!q || [r.id, r.name, r.owner, r.description, ...r.tags].some((f) => f?.toLowerCase().includes(q))),
  );

  return (
    <section>
      <h1>Runbooks</h1>
      <div className="filters" role="search">
        <input type="search" aria-label="Search runbooks" placeholder="Search id, name, owner, tag…" value={query} onChange={(e) => setQuery(e.target.value)} />
        <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">Any status</option>
          <option>DRAFT</option>
          <option>APPROVED</option>
          <option>DEPRECATED</option>
        </select>
        <select aria-label="Tag" value={tag} onChange={(e) => setTag(e.target.value)}>
          <option value="">Any tag</option>
          {tags.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
      </div>
      <Problem error={runbooks.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Runbook</th>
              <th>Status</th>
              <th>Owner</th>
              <th className="wide">Tags</th>
              <th className="wide">Last run</th>
              <th className="wide">Success rate</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => {
              const s = stats[r.id];
              return (
                <tr key={r.id} data-runbook={r.id}>
                  <td>
                    <a href={href("runbooks", r.id)}>{r.id}</a>
                    <div className="muted small">{r.name}</div>
                  </td>
                  <td>
                    <Status value={r.status} />
                  </td>
                  <td>{r.owner ?? "—"}</td>
                  <td className="wide">
                    {r.tags.map((t) => (
                      <span className="tag" key={t}>
                        {t}
                      </span>
                    ))}
                  </td>
                  <td className="wide">{s?.last ? <a href={href("executions", s.last.id)}>{when(s.last.requested_at)}</a> : "—"}</td>
                  <td className="wide">{s && s.finished ? `${Math.round((100 * s.succeeded) / s.finished)}% of ${s.finished}` : "—"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {runbooks.data && shown.length === 0 && <p className="muted">No runbook matches.</p>}
    </section>
  );
}
