import { useEffect, useMemo, useRef, useState } from "react";
import { api, can, type Definition, type ExecutionDetail, type Identity, type ReplayReport, type StepLog } from "../api";
import { Dag } from "../Dag";
import { href } from "../route";
import { follow, TERMINAL, type StreamedEvent } from "../sse";
import { Timeline } from "../Timeline";
import { Json, Problem, Status, when } from "../ui";

const STEP_STATUS: Record<string, string> = {
  "step.scheduled": "SCHEDULED",
  "step.started": "RUNNING",
  "step.waiting": "WAITING",
  "approval.requested": "WAITING",
  "step.succeeded": "SUCCEEDED",
  "step.failed": "FAILED",
  "step.skipped": "SKIPPED",
  "step.retry_requested": "PENDING",
};
const EXECUTION_STATUS: Record<string, string> = {
  "execution.started": "RUNNING",
  "execution.paused": "PAUSED",
  "approval.requested": "WAITING_APPROVAL",
  "approval.decided": "RUNNING",
  "execution.resumed": "RUNNING",
  "step.retry_requested": "RUNNING",
  "execution.succeeded": "SUCCEEDED",
  "execution.failed": "FAILED",
  "execution.aborted": "ABORTED",
  "execution.cancelled": "CANCELLED",
};
const RUNNING = new Set(["NEW", "QUEUED", "RUNNING", "WAITING_APPROVAL"]);

interface LogLine {
  seq: number;
  time: string;
  type: string;
  text: string;
  error: boolean;
}

function describe(event: StreamedEvent): string {
  const d = event.data;
  const step = typeof d.step_id === "string" ? `${d.step_id}: ` : "";
  const error = d.error ?? d.reason;
  if (error) return `${step}${typeof error === "string" ? error : JSON.stringify(error)}`;
  if (event.type === "assumption.checked") return `${d.name} = ${JSON.stringify(d.actual)} (${d.ok ? "ok" : "violated"})`;
  if (typeof d.attempt === "number") return `${step}attempt ${d.attempt}`;
  return step.replace(/: $/, "");
}

export function Execution({ id, who }: { id: string; who: Identity }) {
  const [detail, setDetail] = useState<ExecutionDetail | null>(null);
  const [logs, setLogs] = useState<StepLog[]>([]);
  const [definition, setDefinition] = useState<Definition | null>(null);
  const [statuses, setStatuses] = useState<Record<string, string>>({});
  const [status, setStatus] = useState("");
  const [lines, setLines] = useState<LogLine[]>([]);
  const [events, setEvents] = useState<StreamedEvent[]>([]);
  const [assumptions, setAssumptions] = useState<Record<string, unknown>[]>([]);
  const [selected, setSelected] = useState("");
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [replay, setReplay] = useState<ReplayReport | null>(null);
  const [audit, setAudit] = useState<Record<string, unknown> | null>(null);
  const [live, setLive] = useState(false);
  const [generation, setGeneration] = useState(0);
  const lastSeq = useRef(0);

  async function refresh() {
    try {
      const [d, l] = await Promise.all([
        api<ExecutionDetail>(`/executions/${encodeURIComponent(id)}`),
        api<{ items: StepLog[] }>(`/executions/${encodeURIComponent(id)}/logs`),
      ]);
      setDetail(d);
      setLogs(l.items);
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  useEffect(() => {
    lastSeq.current = 0;
    setStatuses({});
    setLines([]);
    setEvents([]);
    setAssumptions([]);
    setDefinition(null);
    setReplay(null);
    setDetail(null);
    // No fetch here: a run queued a moment ago is not on the bus yet (404). The stream waits
    // for its first event; the detail is fetched then (or once the stream gives up).
  }, [id]);

  useEffect(() => {
    const abort = new AbortController();
    const onEvent = (event: StreamedEvent) => {
      if (event.seq <= lastSeq.current) return;
      if (lastSeq.current === 0) void refresh();
      lastSeq.current = event.seq;
      const d = event.data;
      if (event.type === "execution.requested" && d.runbook && typeof d.runbook === "object") {
        setDefinition(d.runbook as Definition);
        setStatus((s) => s || "QUEUED");
      }
      const stepStatus = STEP_STATUS[event.type];
      if (stepStatus && typeof d.step_id === "string") {
        const node = d.phase === "rollback" ? `${d.step_id}.rollback` : d.step_id;
        setStatuses((s) => ({ ...s, [node]: stepStatus }));
      }
      if (event.type === "steps.skipped" && Array.isArray(d.step_ids)) {
        // A wind-down's pending steps, all in one event: each is skipped as by a step.skipped.
        const ids = d.step_ids.filter((id): id is string => typeof id === "string");
        setStatuses((s) => ({ ...s, ...Object.fromEntries(ids.map((id) => [id, "SKIPPED"])) }));
        setEvents((e) => [...e, ...ids.map((id) => ({ ...event, type: "step.skipped", data: { ...d, step_id: id } }))]);
      }
      if (EXECUTION_STATUS[event.type]) setStatus(EXECUTION_STATUS[event.type]);
      if (event.type === "assumption.checked") setAssumptions((a) => [...a, d]);
      if (typeof d.step_id === "string") setEvents((e) => [...e, event]);
      setLines((l) => [
        ...l,
        {
          seq: event.seq,
          time: event.time,
          type: event.type,
          text: describe(event),
          error: event.type.endsWith(".failed") || event.type === "execution.aborted" || d.ok === false,
        },
      ]);
      if (TERMINAL.has(event.type) || event.type === "kpi.evaluated" || event.type === "approval.decided") void refresh();
    };
    setLive(true);
    follow(id, onEvent, abort.signal, lastSeq.current).finally(() => {
      setLive(false);
      if (lastSeq.current === 0 && !abort.signal.aborted) void refresh(); // says why there is nothing
    });
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id, generation]);

  async function control(path: string, label: string, json?: unknown) {
    setError("");
    setNotice("");
    try {
      await api(`/executions/${encodeURIComponent(id)}/${path}`, { method: "POST", json });
      setNotice(`${label}: accepted`);
      setGeneration((g) => g + 1); // follow what it sets off
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  async function runReplay() {
    setError("");
    try {
      setReplay(await api<ReplayReport>(`/executions/${encodeURIComponent(id)}/replay`, { method: "POST" }));
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  async function runAudit() {
    setError("");
    try {
      setAudit(await api<Record<string, unknown>>(`/executions/${encodeURIComponent(id)}/audit`));
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  const shownStatus = status || detail?.status || "";
  const merged = useMemo<Record<string, string>>(
    () => ({ ...Object.fromEntries((detail?.steps ?? []).map((s) => [s.id, s.status])), ...statuses }),
    [detail, statuses],
  );
  const operator = can(who, "operator");
  const failedSteps = Object.entries(merged).filter(([step, s]) => s === "FAILED" && !step.endsWith(".rollback")).map(([step]) => step);
  const log = logs.find((l) => l.step_id === selected);
  const kpis = detail?.kpis?.kpis ?? {};

  return (
    <section>
      <h1>
        Execution <code className="small">{id}</code> <Status value={shownStatus} />
        {live && <span className="live" title="following live events"> ● live</span>}
      </h1>
      {detail && (
        <p className="muted">
          <a href={href("runbooks", detail.runbook_id ?? "")}>{detail.runbook_id}</a> v{detail.runbook_version} · by{" "}
          {String(detail.trigger?.actor ?? detail.actor_id ?? "—")} · started {when(detail.started_at)} · ended {when(detail.completed_at)}
        </p>
      )}
      {definition?.legal_basis && (
        <p className="small">
          <strong>Legal basis:</strong> {definition.legal_basis}
        </p>
      )}
      <div className="actions">
        {operator && RUNNING.has(shownStatus) && (
          <button type="button" onClick={() => control("pause", "Pause")}>
            Pause
          </button>
        )}
        {operator && shownStatus === "PAUSED" && (
          <button type="button" onClick={() => control("resume", "Resume")}>
            Resume
          </button>
        )}
        {operator && (RUNNING.has(shownStatus) || shownStatus === "PAUSED") && (
          <button type="button" className="danger" onClick={() => control("cancel", "Cancel")}>
            Cancel
          </button>
        )}
        {operator &&
          shownStatus === "FAILED" &&
          failedSteps.map((step) => (
            <button type="button" key={step} data-retry={step} onClick={() => control(`steps/${encodeURIComponent(step)}/retry`, `Retry ${step}`)}>
              ↻ Retry {step}
            </button>
          ))}
        {operator && !RUNNING.has(shownStatus) && shownStatus !== "PAUSED" && shownStatus && (
          <button type="button" onClick={runReplay}>
            Replay and verify
          </button>
        )}
        <button type="button" onClick={runAudit}>
          Audit record
        </button>
      </div>
      {notice && <p className="ok">{notice}</p>}
      <Problem error={error} />
      {replay && (
        <div className={`card verdict ${replay.verified ? "good" : "bad"}`} data-testid="replay-verdict" role="status">
          <strong>{replay.verified ? "✔ Replay verified" : "✘ Replay deviates"}</strong>: the recorded events, replayed, give{" "}
          {replay.verified ? "the same result" : `${replay.deviations.length} deviation(s)`} (source: {replay.source}).
          {replay.deviations.length > 0 && <Json value={replay.deviations} />}
        </div>
      )}
      {audit && (
        <div className={`card verdict ${audit.intact ? "good" : "bad"}`} data-testid="audit-verdict">
          <strong>{audit.intact ? "✔ Event chain intact" : "✘ Event chain broken"}</strong>
          <Json value={audit.problems} />
        </div>
      )}
      <div className="layout-2">
        <div>{definition ? <Dag steps={definition.steps} statuses={merged} onSelect={setSelected} /> : <p className="muted">Waiting for the execution's events…</p>}</div>
        <aside className="card">
          <h2>Steps</h2>
          <ul className="plain steps">
            {(definition?.steps ?? []).map((s) => (
              <li key={s.id}>
                <button type="button" className={`link${selected === s.id ? " selected" : ""}`} onClick={() => setSelected(s.id)}>
                  {s.id}
                </button>{" "}
                <Status value={merged[s.id] ?? "PENDING"} />
              </li>
            ))}
          </ul>
          {selected && (
            <div className="step-detail" data-testid="step-detail">
              <h3>{selected}</h3>
              {log ? (
                <>
                  <p>
                    <Status value={log.status} /> {log.attempts} attempt(s){log.rollback_status ? ` · rollback ${log.rollback_status}` : ""}
                  </p>
                  <h4>Inputs</h4>
                  <Json value={log.inputs} />
                  <h4>Outputs</h4>
                  <Json value={log.outputs} />
                  {log.errors && log.errors.length > 0 && (
                    <>
                      <h4>Errors</h4>
                      <pre className="json error">{JSON.stringify(log.errors, null, 2)}</pre>
                    </>
                  )}
                </>
              ) : (
                <p className="muted">Not run yet.</p>
              )}
            </div>
          )}
        </aside>
      </div>
      <div className="card">
        <h2>Timeline</h2>
        <Timeline events={events} now={Date.now()} />
      </div>
      <div className="layout-2">
        <div className="card">
          <h2>Events</h2>
          <ol className="log" aria-live="polite">
            {lines.map((l) => (
              <li key={l.seq} className={l.error ? "error" : ""}>
                <span className="muted">{l.seq}</span> <span className="muted">{l.time.slice(11, 23)}</span> <strong>{l.type}</strong> {l.text}
              </li>
            ))}
          </ol>
        </div>
        <div className="card">
          <h2>KPIs</h2>
          <table>
            <tbody>
              {Object.entries(kpis).map(([name, k]) => (
                <tr key={name} className={k.ok === false ? "error" : ""}>
                  <th>{name}</th>
                  <td>{JSON.stringify(k.value ?? null)}</td>
                  <td className="muted">{k.target == null ? "" : `target ${JSON.stringify(k.target)}`}</td>
                  <td>{k.ok == null ? "" : k.ok ? "✔" : "✘"}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Assumptions</h2>
          <ul className="plain">
            {assumptions.map((a, i) => (
              <li key={i} className={a.ok === false ? "error" : ""}>
                {a.ok ? "✔" : "✘"} {String(a.name)}: <code>{String(a.expected)}</code>
              </li>
            ))}
          </ul>
        </div>
      </div>
    </section>
  );
}
