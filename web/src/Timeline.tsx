// A Gantt chart of an execution's step attempts, from its events: one row per step, one bar per
// attempt (from scheduled to its outcome), so retries and the delays between them show as gaps.
import type { StreamedEvent } from "./sse";

interface Bar {
  attempt: number;
  start: number;
  end: number | null;
  outcome: string;
}

const STARTS = new Set(["step.scheduled", "step.started", "step.waiting"]);
const ENDS: Record<string, string> = { "step.succeeded": "succeeded", "step.failed": "failed", "step.skipped": "skipped" };

export function attempts(events: StreamedEvent[]): { rows: [string, Bar[]][]; from: number; to: number } {
  const rows = new Map<string, Bar[]>();
  let from = Infinity;
  let to = -Infinity;
  for (const event of events) {
    const step = event.data.step_id;
    const at = Date.parse(event.time);
    if (typeof step !== "string" || Number.isNaN(at) || event.data.phase === "rollback") continue;
    const attempt = typeof event.data.attempt === "number" ? event.data.attempt : 1;
    const bars = rows.get(step) ?? [];
    rows.set(step, bars);
    // The open bar of this attempt; a step skipped and then run again after a retry starts anew.
    let bar = bars.find((b) => b.attempt === attempt && b.end === null);
    if (STARTS.has(event.type) && !bar) {
      bar = { attempt, start: at, end: null, outcome: "running" };
      bars.push(bar);
    }
    if (ENDS[event.type]) {
      if (!bar) bars.push((bar = { attempt, start: at, end: at, outcome: ENDS[event.type] }));
      bar.end = at;
      bar.outcome = ENDS[event.type];
    }
    from = Math.min(from, at);
    to = Math.max(to, at);
  }
  return { rows: [...rows.entries()], from, to };
}

export function Timeline({ events, now }: { events: StreamedEvent[]; now: number }) {
  const { rows, from, to } = attempts(events);
  if (!rows.length) return <p className="muted">No step has run yet.</p>;
  const end = Math.max(to, rows.some(([, bars]) => bars.some((b) => b.end === null)) ? now : to);
  const span = Math.max(end - from, 1);
  const pct = (t: number) => `${((100 * (t - from)) / span).toFixed(2)}%`;
  return (
    <div className="timeline" role="table" aria-label="Step attempts over time">
      {rows.map(([step, bars]) => (
        <div className="timeline-row" role="row" key={step}>
          <span className="timeline-label" role="rowheader">
            {step}
          </span>
          <span className="timeline-track" role="cell">
            {bars.map((b) => (
              <span
                key={`${b.attempt}@${b.start}`}
                className={`timeline-bar status-${b.outcome}`}
                style={{ left: pct(b.start), width: `max(3px, calc(${pct(b.end ?? end)} - ${pct(b.start)}))` }}
                title={`${step} attempt ${b.attempt}: ${b.outcome}, ${(((b.end ?? end) - b.start) / 1000).toFixed(2)} s`}
              />
            ))}
          </span>
          <span className="small muted">{bars.length > 1 ? `${bars.length} attempts` : ""}</span>
        </div>
      ))}
      <div className="small muted">{((end - from) / 1000).toFixed(1)} s from the first step</div>
    </div>
  );
}
