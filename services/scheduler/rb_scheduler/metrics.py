"""The scheduler's metrics: alerts received, matched and deduplicated; cron fires."""

from __future__ import annotations

from rb_common.metrics import Counter

ALERTS_RECEIVED = Counter("rb_alerts_received_total", "Alert events the router read, by source.", ["source"])
ALERTS_MATCHED = Counter(
    "rb_alerts_matched_total",
    "Executions an alert started (one per matching runbook trigger), by runbook.",
    ["runbook"],
)
ALERTS_DEDUPLICATED = Counter(
    "rb_alerts_deduplicated_total",
    "Matches of an alert that started nothing because the same alert already had (same dedupe id).",
    ["runbook"],
)
CRON_FIRES = Counter(
    "rb_cron_fires_total",
    "Cron fire times handled, by runbook and outcome (triggered; duplicate: another replica did; "
    "failed).",
    ["runbook", "outcome"],
)
