"""Alembic environment: runs on the connection handed over by rb_store.db.migrate."""

from __future__ import annotations

from alembic import context

from rb_store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    engine = context.config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
