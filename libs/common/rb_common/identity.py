"""Who is asking: identities, their roles and teams, and API key material.

An `Identity` is what the API authenticated (an API key or an OIDC/JWT bearer token); its
`actor` is what every event and record names as the one who acted (`key:<name>` for keys,
`oidc:<subject>` for tokens).

Roles: `viewer` reads everything visible to it; `operator` executes, cancels, pauses, resumes
and retries; `approver` decides approval steps; `author` creates, revises, rolls back and deletes
runbooks; `admin` manages keys, approves and deprecates revisions, manages secrets, and may do
everything. Operators, approvers and authors can also read (they imply `viewer`); `admin` implies
every role. Team scope: a runbook with `team: X` is visible to members of team X and to admins.

API keys are 256 random bits (`rbk_` + 43 url-safe base64 characters), shown once and stored only
as their SHA-256, so a lookup is one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    AUTHOR = "author"
    ADMIN = "admin"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)

# What each role grants besides itself.
_IMPLIES: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset(),
    Role.OPERATOR: frozenset({Role.VIEWER}),
    Role.APPROVER: frozenset({Role.VIEWER}),
    Role.AUTHOR: frozenset({Role.VIEWER}),
    Role.ADMIN: frozenset(Role),
}

KEY_PREFIX = "rbk_"
KEY_BYTES = 32  # 256 bits
SYSTEM_KEY_NAME = "system"  # the identity `rb up` registers and approves the bundled runbooks as
BOOTSTRAP_KEY_NAME = "admin"  # the key seeded from RB_BOOTSTRAP_ADMIN_KEY / RB_HOME/admin.key


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """What is stored of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def known_roles(values: Iterable[object]) -> frozenset[Role]:
    """The known roles among `values` (unknown names are ignored)."""
    out: set[Role] = set()
    for value in values:
        try:
            out.add(Role(str(value).strip().lower()))
        except ValueError:
            continue
    return frozenset(out)


def granted(roles: Iterable[Role]) -> frozenset[Role]:
    """Every role `roles` grant, implied ones included."""
    out: set[Role] = set()
    for role in roles:
        out.add(role)
        out |= _IMPLIES[role]
    return frozenset(out)


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. `id`: the key id or the token subject; `kind`: key | oidc."""

    id: str
    name: str
    kind: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    teams: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """How events and records name this identity."""
        return f"{self.kind}:{self.name}"

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    def has(self, role: Role) -> bool:
        return role in granted(self.roles)

    def sees_team(self, team: str | None) -> bool:
        """Whether a runbook scoped to `team` (None: not scoped) is visible to this identity."""
        return team is None or self.is_admin or team in self.teams

    def team_filter(self) -> frozenset[str] | None:
        """The teams whose runbooks this identity sees besides unscoped ones; None: all (admin)."""
        return None if self.is_admin else self.teams
