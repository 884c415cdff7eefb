import { api, can, type Identity } from "../api";
import { href } from "../route";
import { Problem, useLoad, when } from "../ui";

interface Schedule {
  runbook_id: string;
  trigger_index: number;
  cron: string;
  timezone?: string | null;
  paused: boolean;
  next_fire_time: string | null;
  last_fire_time: string | null;
  missed_fires: number;
}

export function Schedules({ who }: { who: Identity }) {
  const schedules = useLoad(() => api<{ items: Schedule[] }>("/schedules"), []);
  async function toggle(s: Schedule) {
    await api(`/schedules/${encodeURIComponent(s.runbook_id)}/${s.trigger_index}/${s.paused ? "resume" : "pause"}`, { method: "POST" });
    schedules.reload();
  }
  return (
    <section>
      <h1>Schedules</h1>
      <Problem error={schedules.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Runbook</th>
              <th>Cron</th>
              <th>Next fire</th>
              <th>Last fire</th>
              <th>Missed</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(schedules.data?.items ?? []).map((s) => (
              <tr key={`${s.runbook_id}/${s.trigger_index}`}>
                <td>
                  <a href={href("runbooks", s.runbook_id)}>{s.runbook_id}</a>
                </td>
                <td>
                  <code>{s.cron}</code> {s.timezone ?? ""}
                </td>
                <td>{s.paused ? <span className="badge status-paused">PAUSED</span> : when(s.next_fire_time)}</td>
                <td>{when(s.last_fire_time)}</td>
                <td>{s.missed_fires}</td>
                <td>
                  {can(who, "operator") && (
                    <button type="button" className="small" onClick={() => toggle(s)}>
                      {s.paused ? "Resume" : "Pause"}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {schedules.data && schedules.data.items.length === 0 && <p className="muted">No cron triggers in the approved runbooks.</p>}
    </section>
  );
}
