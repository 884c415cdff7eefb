"""The secret store: step secrets in the `secrets` table, each value a Fernet token under the
newest key of RB_MASTER_KEY (MultiFernet: older keys still decrypt until `rotate` re-encrypts).

Write-only from the outside: `put`, `names` (never values), `delete`, `rotate`. Only whoever runs
steps reads values (`StoreSecrets`, one of the worker's secret sources). Synchronous SQLAlchemy
Core; async callers run these in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import MultiFernet
from sqlalchemy import Engine, delete, insert, select, update

from rb_common.secrets import (
    DirSecrets,
    EnvSecrets,
    MasterKeyError,
    SecretSource,
    check_name,
    check_value,
    keyring,
    seal,
    unseal,
)
from rb_common.settings import Settings
from rb_store.tables import secrets as secrets_table

log = logging.getLogger(__name__)


class SecretError(ValueError):
    """A name or value the store refuses (the message never holds the value)."""


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


class SecretStore:
    def __init__(self, engine: Engine, master_key: str | None) -> None:
        self.engine = engine
        self._master_key = master_key

    def keys(self) -> MultiFernet:
        return keyring(self._master_key)

    def put(self, name: str, value: str, actor: str | None = None) -> bool:
        """Store `value` as `name` (encrypted); True if it was new."""
        problem = check_name(name) or check_value(value)
        if problem:
            raise SecretError(problem)
        token = seal(self.keys(), name, value)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            found = conn.execute(
                update(secrets_table)
                .where(secrets_table.c.name == name)
                .values(token=token, updated_at=now, updated_by=actor)
            ).rowcount
            if found:
                return False
            conn.execute(
                insert(secrets_table).values(
                    name=name, token=token, created_at=now, updated_at=now, created_by=actor, updated_by=actor
                )
            )
            return True

    def names(self) -> list[dict[str, Any]]:
        """Every stored secret's name and history, never its value."""
        columns = [c for c in secrets_table.c if c.name != "token"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(secrets_table.c.name)).all()
        return [
            {
                "name": row.name,
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
                "created_by": row.created_by,
                "updated_by": row.updated_by,
            }
            for row in rows
        ]

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(secrets_table).where(secrets_table.c.name == name)).rowcount)

    def rotate(self) -> int:
        """Re-encrypt every value with the newest key; the number of secrets rotated. Fails as a
        whole (nothing changed) if any value cannot be decrypted with the keys given."""
        keys = self.keys()
        with self.engine.begin() as conn:
            rows = conn.execute(select(secrets_table.c.name, secrets_table.c.token)).all()
            for row in rows:
                unseal(keys, row.name, row.token)  # every one readable before any is rewritten
            for row in rows:
                conn.execute(
                    update(secrets_table)
                    .where(secrets_table.c.name == row.name)
                    .values(token=keys.rotate(row.token.encode()).decode())
                )
        return len(rows)

    def load(self) -> dict[str, str]:
        """Every value, decrypted (for the worker's steps only). A value that does not decrypt
        (another master key) is left out and logged by name."""
        keys = self.keys()
        with self.engine.connect() as conn:
            rows = conn.execute(select(secrets_table.c.name, secrets_table.c.token)).all()
        values: dict[str, str] = {}
        for row in rows:
            try:
                values[row.name] = unseal(keys, row.name, row.token)
            except MasterKeyError as exc:
                log.warning("%s", exc)
        return values


class StoreSecrets:
    """The store as a worker's secret source; the engine is made when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: SecretStore | None = None

    def load(self) -> dict[str, str]:
        if self._store is None:
            from rb_store.db import database_url, make_engine

            key = self.settings.master_key
            self._store = SecretStore(
                make_engine(database_url(self.settings)), key.get_secret_value() if key else None
            )
        return self._store.load()


def step_secret_sources(settings: Settings, environ: Mapping[str, str]) -> list[SecretSource]:
    """The sources of step secrets, first wins for a name: RB_SECRET_<NAME>, then the files in
    RB_SECRETS_DIR, then the encrypted store (only with RB_MASTER_KEY set)."""
    sources: list[SecretSource] = [EnvSecrets(dict(environ))]
    if settings.secrets_dir is not None:
        sources.append(DirSecrets(settings.secrets_dir))
    if settings.master_key is not None:
        sources.append(StoreSecrets(settings))
    return sources
