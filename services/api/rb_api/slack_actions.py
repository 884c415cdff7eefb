"""Slack's Approve / Reject buttons (the notifier's approval_requested message): the
interactivity request, checked and turned into a decision.

- Signature: `X-Slack-Signature: v0=<hex HMAC-SHA256(RB_SLACK_SIGNING_SECRET,
  "v0:<X-Slack-Request-Timestamp>:<raw body>")>`; a timestamp more than 5 minutes from now is
  refused, and so is a request whose signature was accepted already (a replay): 401.
- The clicking Slack user maps to the identity (API key) that carries its `slack_user_id`; the
  decision is then taken exactly as through the REST route (rb_api.approvals.decide), so the
  same rules hold (approvers, four eyes, one decision per person, required comments).
- Slack shows what the answer says: a refusal comes back as an ephemeral text, and a decision
  replaces the buttons of the message with its outcome (chat.update), so a second click finds
  nothing to press; one that still arrives changes nothing (409, said ephemerally).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import httpx

from rb_api import approvals
from rb_api.alerts.signatures import guard_of, unauthorized
from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.problems import ProblemError
from rb_store.keys import find_slack_user

log = logging.getLogger("rb_api")

WINDOW = 300.0  # seconds a signed click stays valid
ACTIONS = {"rb_approve": "approve", "rb_reject": "reject"}
CHALLENGE = 'Slack-Signature realm="rb"'


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str | None, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The request's signature if Slack signed it within the window; 401 otherwise."""
    if not secret:
        raise unauthorized(
            "RB_SLACK_SIGNING_SECRET is not set: Slack clicks are refused", "slack-disabled", CHALLENGE
        )
    timestamp = headers.get("x-slack-request-timestamp", "")
    signed = headers.get("x-slack-signature", "")
    if not timestamp or not signed:
        raise unauthorized("the request is not signed by Slack", "invalid-signature", CHALLENGE)
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        raise unauthorized(
            "X-Slack-Request-Timestamp is not a number", "invalid-signature", CHALLENGE
        ) from None
    if age > WINDOW:
        raise unauthorized(
            f"the click was signed {age:.0f}s from now: more than {WINDOW:.0f}s", "stale-signature", CHALLENGE
        )
    if not hmac.compare_digest(signature(secret, timestamp, body), signed):
        raise unauthorized("the Slack signature does not match", "invalid-signature", CHALLENGE)
    return signed


def parse(body: bytes) -> dict[str, Any]:
    """The `payload` JSON of a form-encoded interactivity request (400 when malformed)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise ProblemError(
            400, "expected a form field `payload` holding JSON", slug="invalid-request"
        ) from None
    if not isinstance(payload, dict):
        raise ProblemError(400, "`payload` is not a JSON object", slug="invalid-request")
    return payload


def ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


async def handle(svc: Services, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    secret = svc.settings.slack_signing_secret
    signed = verify(secret.get_secret_value() if secret else None, headers, body, time.time())
    guard = guard_of(svc)
    if guard.seen(f"slack:{signed}"):
        raise unauthorized("this Slack request was received already (a replay)", "replayed", CHALLENGE)
    guard.remember(f"slack:{signed}", 2 * WINDOW)
    payload = parse(body)
    actions = payload.get("actions") or []
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    decision = ACTIONS.get(str(action.get("action_id")))
    approval_id = action.get("value")
    user = (payload.get("user") or {}).get("id") if isinstance(payload.get("user"), dict) else None
    if (
        payload.get("type") != "block_actions"
        or decision is None
        or not isinstance(approval_id, str)
        or not user
    ):
        return ephemeral("rb does not know this action")
    stored = await in_thread(find_slack_user, svc.engine, str(user))
    if stored is None:
        return ephemeral(
            f"your Slack user {user} is not linked to an rb identity (rb keys create --slack-user)"
        )
    who = stored.identity()
    try:
        result = await approvals.decide(svc, who, approval_id, decision, None, via="slack")
    except ProblemError as exc:
        return ephemeral(f"not {decision}d: {exc.detail}")
    said = f"{'Approved' if decision == 'approve' else 'Rejected'} by <@{user}> ({who.actor})"
    await update_message(svc, payload, said, keep_buttons=not result["settles"])
    return {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": f"{result['decision']}d as {who.actor}",
    }


async def update_message(svc: Services, payload: dict[str, Any], outcome: str, *, keep_buttons: bool) -> None:
    """chat.update: the decision under the message; its buttons give way to it once the step is
    settled (they stay while more approvals are needed). A failure is logged: the decision
    stands, and the message only looks stale."""
    settings = svc.settings
    channel = (payload.get("channel") or {}).get("id") if isinstance(payload.get("channel"), dict) else None
    container = _mapping(payload.get("container"))
    message = _mapping(payload.get("message"))
    ts = container.get("message_ts") or message.get("ts")
    if not settings.slack_token or not channel or not ts:
        return
    kept = [
        b
        for b in message.get("blocks") or []
        if isinstance(b, dict) and (keep_buttons or b.get("block_id") != "rb_approval")
    ]
    blocks = [*kept, {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]}]
    base = (settings.slack_base_url or "https://slack.com").rstrip("/")
    url = f"{base}/chat.update" if base.endswith("/api") else f"{base}/api/chat.update"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                url,
                json={"channel": channel, "ts": ts, "text": outcome, "blocks": blocks},
                headers={"Authorization": f"Bearer {settings.slack_token}"},
            )
        answer = response.json()
        if not answer.get("ok"):
            log.warning("chat.update of %s failed: %s", ts, answer.get("error"))
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("chat.update of %s failed: %s", ts, exc)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
