"""The PostgreSQL / SQLite schema: event store, projections, runbook registry.

One MetaData for Alembic. The recorder writes `events` and the projections; the API owns the
registry tables and reads the projections.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("event", JSON, nullable=False),
)

runbook_executions = Table(
    "runbook_executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("runbook_id", String(100), nullable=False, index=True),
    Column("runbook_version", String(50), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("requested_at", DateTime(timezone=True), index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("actor_id", String(200)),
    Column("trigger", JSON),
    Column("kpis", JSON),
    Column("reason", Text),
    Column("last_seq", Integer, nullable=False),
    Column("metadata", JSON),
)

runbook_step_logs = Table(
    "runbook_step_logs",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("step_id", String(100), primary_key=True),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("status", String(32), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("inputs", JSON),
    Column("outputs", JSON),
    Column("errors", JSON),
    Column("rollback_status", String(32)),
)

runbooks = Table(
    "runbooks",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("status", String(32), nullable=False),  # DRAFT | APPROVED | DEPRECATED
    Column("current_revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The current revision's `team:` (None: not team-scoped); only its members and admins see it.
    Column("team", String(100), index=True),
)

runbook_versions = Table(
    "runbook_versions",
    metadata,
    Column("runbook_id", String(100), primary_key=True),
    Column("revision", Integer, primary_key=True, autoincrement=False),
    Column("version", String(50), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("source", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200)),
)

approvals = Table(
    "approvals",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("step_id", String(100), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("approvers", JSON),
    Column("decisions", JSON),
    Column("requested_at", DateTime(timezone=True)),
    Column("decided_at", DateTime(timezone=True)),
    # 0008: projected by the recorder from approval steps (rb_store.approval_rows).
    Column("approval_id", String(200), unique=True, index=True),  # `<execution>:<step>[:<attempt> if > 1]`
    Column("runbook_id", String(100)),
    Column("prompt", Text),
    Column("min_approvals", Integer),
    Column("require_comment", Boolean),
    Column("timeout_at", DateTime(timezone=True)),
    Column("timeout_action", String(16)),
    Column("requested_by", String(200)),
)

# Lifecycle decisions on runbook revisions (rb_api.registry): who approved or deprecated which
# revision and who authored it, and the approvals refused by four eyes (an admin approving a
# revision of their own). `reason`: why (the installer exception, the refusal).
runbook_decisions = Table(
    "runbook_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("runbook_id", String(100), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("action", String(32), nullable=False),  # approved | approval_refused | deprecated
    Column("actor", String(200), nullable=False),
    Column("author", String(200)),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Idempotency keys of the API's execute calls: the same key gives the same execution.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("runbook_id", String(100), nullable=False),
    Column("execution_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Operators pause and resume cron schedules; one row per (runbook, trigger index) touched.
schedule_state = Table(
    "schedule_state",
    metadata,
    Column("runbook_id", String(100), primary_key=True),
    Column("trigger_index", Integer, primary_key=True, autoincrement=False),
    Column("paused", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200)),
)

# Cron catch-up (rb_scheduler.cron, issue 13): the latest fire time each schedule published
# (a scheduler that starts catches up from it), and the fires that came back too late to run
# (older than RB_SCHEDULER_MISFIRE_GRACE), which GET /schedules shows. Written by schedulers.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("runbook_id", String(100), primary_key=True),
    Column("trigger_index", Integer, primary_key=True, autoincrement=False),
    Column("last_fire_time", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

schedule_misses = Table(
    "schedule_misses",
    metadata,
    Column("runbook_id", String(100), primary_key=True),
    Column("trigger_index", Integer, primary_key=True, autoincrement=False),
    Column("fire_time", DateTime(timezone=True), primary_key=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# Every alert the scheduler's router handled, with what it matched (or why nothing): written by
# the router after matching, one row per alert (a redelivered alert updates its row).
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(64), primary_key=True),  # digest of source, addressed runbook, dedupe id
    Column("source", String(64), nullable=False),
    Column("dedupe_id", Text, nullable=False),
    Column("runbook_id", String(100)),  # generic webhooks address one runbook
    Column("name", Text),
    Column("status", String(16), nullable=False),  # firing | resolved
    Column("labels", JSON),
    Column("summary", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("routed_at", DateTime(timezone=True), nullable=False),
    Column("registry_seq", BigInteger),  # the registry as of the alert's arrival
    Column("matched", Boolean, nullable=False),
    Column("matches", JSON),  # [{runbook_id, revision, trigger_index, execution_id, started}]
    Column("reason", Text),  # why it matched nothing
)

# API keys (rb_common.identity): only the SHA-256 of a key is stored; a lookup is one query on
# the unique `key_hash`. Revoked and expired keys stay, for the record of who acted.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),  # the first characters, to tell keys apart
    Column("roles", JSON, nullable=False),
    Column("teams", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(200)),
    Column("last_used_at", DateTime(timezone=True)),
    # 0008: the Slack user whose Approve / Reject clicks decide as this identity.
    Column("slack_user_id", String(32), index=True),
)

# The secret store: one Fernet token per step secret (rb_store.secrets), encrypted with the
# newest key of RB_MASTER_KEY; values are never stored, logged or answered in clear.
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("token", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200)),
    Column("updated_by", String(200)),
)

# Content-addressed blobs (screenshots, diff images) with RB_ARTIFACTS_BACKEND=postgres: the bytes
# are a PostgreSQL large object (`oid`); rb_store.artifacts.
artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(71), primary_key=True),  # sha256:<64 hex>
    Column("oid", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Which executions recorded a blob: who may read it follows from them (the artifacts route).
artifact_refs = Table(
    "artifact_refs",
    metadata,
    Column("digest", String(71), primary_key=True),
    Column("execution_id", String(64), primary_key=True),
)

# Last stream sequence each projection consumer has applied, so redelivery is a no-op.
consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("stream_seq", BigInteger, nullable=False),
    UniqueConstraint("consumer"),
)

Index("ix_events_type", events.c.type)
Index("ix_alerts_received_at", alerts.c.received_at)
Index("ix_alerts_source", alerts.c.source)
Index("ix_alerts_matched", alerts.c.matched)
Index("ix_approvals_status", approvals.c.status)
