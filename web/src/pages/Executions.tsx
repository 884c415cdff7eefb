import { useState } from "react";
import { api, type ExecutionSummary, type Page } from "../api";
import { href } from "../route";
import { Problem, Status, useLoad, when } from "../ui";

const STATUSES = ["NEW", "QUEUED", "RUNNING", "WAITING_APPROVAL", "PAUSED", "SUCCEEDED", "FAILED", "ABORTED", "CANCELLED"];

export function Executions() {
  const [status, setStatus] = useState("");
  const [runbook, setRunbook] = useState("");
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  if (runbook.trim()) query.set("runbook_id", runbook.trim());
  const runs = useLoad(() => api<Page<ExecutionSummary>>(`/executions?${query}`), [status, runbook]);
  return (
    <section>
      <h1>Executions</h1>
      <div className="filters" role="search">
        <input type="search" aria-label="Runbook id" placeholder="Runbook id" value={runbook} onChange={(e) => setRunbook(e.target.value)} />
        <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">Any status</option>
          {STATUSES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
        <button type="button" onClick={runs.reload}>
          Refresh
        </button>
      </div>
      <Problem error={runs.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Execution</th>
              <th>Runbook</th>
              <th>Status</th>
              <th>Requested</th>
              <th className="wide">By</th>
            </tr>
          </thead>
          <tbody>
            {(runs.data?.items ?? []).map((e) => (
              <tr key={e.id} data-execution={e.id}>
                <td>
                  <a href={href("executions", e.id)}>
                    <code>{e.id.slice(0, 12)}</code>
                  </a>
                </td>
                <td>{e.runbook_id ? <a href={href("runbooks", e.runbook_id)}>{e.runbook_id}</a> : "—"}</td>
                <td>
                  <Status value={e.status} />
                </td>
                <td>{when(e.requested_at)}</td>
                <td className="wide">{e.actor_id ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {runs.data && runs.data.items.length === 0 && <p className="muted">No executions.</p>}
    </section>
  );
}
