"""rb_store: the database (PostgreSQL, SQLite by default) every service that reads or writes it
shares.

Public modules:

- `rb_store.db`: engines from settings, Alembic migrations (`migrate`, `migrate_when_reachable`).
- `rb_store.tables`: the schema (SQLAlchemy Core tables); `rb_store.migrations`: its history.
- `rb_store.recorder`: `Recorder.apply` — events into the `events` table and the projections,
  idempotently, in one transaction per batch; `rb_store.projection` computes the projections
  with the kernel's fold.
- `rb_store.queries`: reads of executions, step logs and events; `rb_store.store`: the event
  store port over the database; `rb_store.registry`: approved runbooks and paused schedules.
"""

__all__ = ["db", "projection", "queries", "recorder", "registry", "store", "tables"]
