import { api, type Page } from "../api";
import { href } from "../route";
import { Problem, Status, useLoad, when } from "../ui";

interface Alert {
  id: string;
  source: string;
  status: string;
  name: string | null;
  summary: string | null;
  received_at: string | null;
  matched: boolean;
  dedupe_id?: string | null;
  runbook_ids: (string | null)[];
  execution_ids: (string | null)[];
  reason: string | null;
}

export function Alerts() {
  const alerts = useLoad(() => api<Page<Alert>>("/alerts?limit=100"), []);
  return (
    <section>
      <h1>Alerts</h1>
      <Problem error={alerts.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Received</th>
              <th>Source</th>
              <th>Alert</th>
              <th>Status</th>
              <th>Matched</th>
              <th>Runs</th>
            </tr>
          </thead>
          <tbody>
            {(alerts.data?.items ?? []).map((a) => (
              <tr key={a.id}>
                <td>{when(a.received_at)}</td>
                <td>{a.source}</td>
                <td>
                  {a.name ?? "—"}
                  <div className="muted small">{a.summary ?? a.reason ?? ""}</div>
                </td>
                <td>
                  <Status value={a.status} />
                </td>
                <td>{a.matched ? a.runbook_ids.filter(Boolean).join(", ") : "no"}</td>
                <td>
                  {a.execution_ids.filter(Boolean).map((e) => (
                    <a key={e} href={href("executions", e as string)}>
                      <code>{(e as string).slice(0, 8)}</code>{" "}
                    </a>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {alerts.data && alerts.data.items.length === 0 && <p className="muted">No alerts received.</p>}
    </section>
  );
}
