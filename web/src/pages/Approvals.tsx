import { useState } from "react";
// A decision is accepted (202) before the approval's record changes: the card says so at once.
import { api, can, type Approval, type Identity, type Page } from "../api";
import { href } from "../route";
import { Problem, useLoad, when } from "../ui";

export function Approvals({ who }: { who: Identity }) {
  const pending = useLoad(() => api<Page<Approval>>("/approvals?status=pending"), []);
  const [decided, setDecided] = useState<Record<string, string>>({});
  return (
    <section>
      <h1>Approvals</h1>
      <p className="muted">Pending requests, newest first.</p>
      <Problem error={pending.error} />
      {(pending.data?.items ?? []).map((a) => (
        <ApprovalCard
          key={a.id}
          approval={a}
          who={who}
          decided={decided[a.id]}
          onDecided={(decision) => setDecided((d) => ({ ...d, [a.id]: decision }))}
        />
      ))}
      {pending.data && pending.data.items.length === 0 && <p className="muted">Nothing waits for a decision.</p>}
    </section>
  );
}

function ApprovalCard({
  approval,
  who,
  decided,
  onDecided,
}: {
  approval: Approval;
  who: Identity;
  decided: string | undefined;
  onDecided: (decision: string) => void;
}) {
  const [comment, setComment] = useState("");
  const [error, setError] = useState("");
  const commentId = `comment-${approval.id}`;

  async function decide(decision: "approve" | "reject") {
    setError("");
    try {
      await api(`/approvals/${encodeURIComponent(approval.id)}/${decision}`, {
        method: "POST",
        json: comment.trim() ? { comment: comment.trim() } : {},
      });
      onDecided(decision === "approve" ? "approved" : "rejected");
    } catch (e) {
      setError(String(e instanceof Error ? e.message : e));
    }
  }

  return (
    <article className="card approval" data-approval={approval.id} data-decided={decided ?? ""}>
      <h2>{approval.prompt ?? `${approval.runbook_id}: ${approval.step_id}`}</h2>
      <p className="muted small">
        <a href={href("runbooks", approval.runbook_id)}>{approval.runbook_id}</a> · step {approval.step_id} ·{" "}
        <a href={href("executions", approval.execution_id)}>execution</a> · asked by {approval.requested_by ?? "—"} {when(approval.requested_at)} ·
        until {when(approval.timeout_at)} · approvers {(approval.approvers ?? []).join(", ")}
      </p>
      {decided ? (
        <p className="ok" role="status">
          ✔ You {decided} it; the run goes on.
        </p>
      ) : can(who, "approver") ? (
        <>
          <label htmlFor={commentId}>Comment{approval.require_comment ? " (required)" : ""}</label>
          <textarea id={commentId} rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
          <div className="actions">
            <button type="button" className="primary" onClick={() => decide("approve")} disabled={approval.require_comment && !comment.trim()}>
              Approve
            </button>
            <button type="button" className="danger" onClick={() => decide("reject")} disabled={approval.require_comment && !comment.trim()}>
              Reject
            </button>
          </div>
        </>
      ) : (
        <p className="muted small">Deciding needs the approver role.</p>
      )}
      <Problem error={error} />
    </article>
  );
}
