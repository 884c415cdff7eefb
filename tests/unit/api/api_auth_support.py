"""Credentials of the API tests (imported by name, like the other support modules): the admin
key every test client sends by default, seeded as RB_BOOTSTRAP_ADMIN_KEY."""

from __future__ import annotations

import uuid
from typing import Any

ADMIN_KEY = "rbk_test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The bearer token of the trigger sources that cannot sign (Alertmanager, Grafana, CloudEvents).
TRIGGER_TOKEN = "rb-test-trigger-token-7d2a"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def approve(client: Any, runbook_id: str) -> Any:
    """Approve the runbook's current revision as a second admin (four eyes: the default admin
    authored it); `client` sends the bootstrap admin key by default."""
    made = await client.post(
        "/api/v1/keys", json={"name": f"approver-{uuid.uuid4().hex[:8]}", "roles": ["admin"]}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    response = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=bearer(made.json()["key"]))
    assert response.status_code == 200, response.text
    return response
