"""API keys in the `api_keys` table: create (the key is returned once), look up by the key's
SHA-256, list, revoke, and seed a known key idempotently (RB_BOOTSTRAP_ADMIN_KEY).

Synchronous SQLAlchemy Core; the API runs these in its thread pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from rb_common.identity import Identity, hash_key, known_roles, new_key
from rb_store.tables import api_keys

# last_used_at is refreshed at most this often per key (a write on the hot path otherwise).
TOUCH_EVERY = timedelta(seconds=60)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    value = _utc(value)
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class StoredKey:
    id: str
    name: str
    prefix: str
    roles: list[str]
    teams: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None
    slack_user_id: str | None = None

    @classmethod
    def of(cls, row: Any) -> StoredKey:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            roles=list(row.roles or []),
            teams=list(row.teams or []),
            created_by=row.created_by,
            created_at=_utc(row.created_at) or datetime.now(UTC),
            expires_at=_utc(row.expires_at),
            revoked_at=_utc(row.revoked_at),
            revoked_by=row.revoked_by,
            last_used_at=_utc(row.last_used_at),
            slack_user_id=getattr(row, "slack_user_id", None),
        )

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def identity(self) -> Identity:
        return Identity(
            id=self.id,
            name=self.name,
            kind="key",
            roles=known_roles(self.roles),
            teams=frozenset(self.teams),
        )

    def public(self, now: datetime | None = None) -> dict[str, Any]:
        """What the API shows of a key: never the key, nor its hash."""
        now = now or datetime.now(UTC)
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "roles": self.roles,
            "teams": self.teams,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "last_used_at": _iso(self.last_used_at),
            "active": self.active(now),
            "slack_user_id": self.slack_user_id,
        }


def _sorted(values: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(values))


def create_key(
    engine: Engine,
    *,
    name: str,
    roles: Iterable[str],
    teams: Iterable[str] = (),
    created_by: str,
    expires_at: datetime | None = None,
    key: str | None = None,
    slack_user_id: str | None = None,
) -> tuple[StoredKey, str]:
    """A new key (or `key`, when given): its stored record and the key itself, the one time."""
    key = key or new_key()
    values = {
        "id": uuid.uuid4().hex,
        "name": name,
        "key_hash": hash_key(key),
        "prefix": key[:8],
        "roles": _sorted(roles),
        "teams": _sorted(teams),
        "created_by": created_by,
        "created_at": datetime.now(UTC),
        "expires_at": expires_at,
        "slack_user_id": slack_user_id,
    }
    with engine.begin() as conn:
        conn.execute(insert(api_keys).values(**values))
        row = conn.execute(select(api_keys).where(api_keys.c.id == values["id"])).one()
    return StoredKey.of(row), key


def seed_key(
    engine: Engine, key: str, *, name: str, roles: Iterable[str], created_by: str
) -> tuple[StoredKey, bool]:
    """Store `key` unless a key with its hash exists (revoked or not: a revoked key is not
    brought back); (the record, whether it was created now)."""
    found = find_key(engine, key)
    if found is not None:
        return found, False
    try:
        stored, _ = create_key(engine, name=name, roles=roles, created_by=created_by, key=key)
    except IntegrityError:  # another API replica seeded it first
        again = find_key(engine, key)
        assert again is not None
        return again, False
    return stored, True


_BY_HASH = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))  # built once


def find_key(engine: Engine, key: str) -> StoredKey | None:
    with engine.connect() as conn:
        row = conn.execute(_BY_HASH, {"key_hash": hash_key(key)}).first()
    return None if row is None else StoredKey.of(row)


def find_active(engine: Engine, key: str, now: datetime | None = None) -> tuple[StoredKey | None, bool]:
    """(the active key `key` is, or None: unknown, revoked, expired; whether its last_used_at is
    due for a refresh). Read-only: the caller may `touch` it off the request's path."""
    now = now or datetime.now(UTC)
    found = find_key(engine, key)
    if found is None or not found.active(now):
        return None, False
    return found, found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY


def touch(engine: Engine, key_id: str, now: datetime | None = None) -> None:
    """Note a key's use (at most once per TOUCH_EVERY)."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .where(or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < now - TOUCH_EVERY))
            .values(last_used_at=now)
        )


def authenticate(engine: Engine, key: str, now: datetime | None = None) -> StoredKey | None:
    """The active key `key` is, or None (unknown, revoked, expired); notes its use."""
    found, due = find_active(engine, key, now)
    if found is not None and due:
        touch(engine, found.id, now)
    return found


def get_key(engine: Engine, key_id: str) -> StoredKey | None:
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return None if row is None else StoredKey.of(row)


def list_keys(engine: Engine, *, include_inactive: bool = True) -> list[StoredKey]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
    keys = [StoredKey.of(row) for row in rows]
    if include_inactive:
        return keys
    now = datetime.now(UTC)
    return [k for k in keys if k.active(now)]


def revoke_key(engine: Engine, key_id: str, *, revoked_by: str) -> StoredKey | None:
    """Revoke (idempotent: an already revoked key keeps its first revocation); None if unknown."""
    with engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .where(api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC), revoked_by=revoked_by)
        )
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return None if row is None else StoredKey.of(row)


def find_slack_user(engine: Engine, slack_user_id: str, now: datetime | None = None) -> StoredKey | None:
    """The active identity that carries this Slack user id (the newest, should there be several)."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            select(api_keys)
            .where(api_keys.c.slack_user_id == slack_user_id)
            .order_by(api_keys.c.created_at.desc())
        ).all()
    return next((k for k in map(StoredKey.of, rows) if k.active(now)), None)
