"""Credentials of the API tests (imported by name, like the other support modules): the admin
key every test client sends by default, seeded as RB_BOOTSTRAP_ADMIN_KEY."""

from __future__ import annotations

ADMIN_KEY = "rbk_test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
