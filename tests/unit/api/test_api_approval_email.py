"""An approval decided from an email: the signed link's GET shows a confirmation page and changes
nothing; its POST decides as email:<address> (listed in approvers), once; tampered, expired or
unlisted links are refused. The notifier puts the link only in a mail to one listed approver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from api_app_support import app_client, app_settings
from api_probe_support import SubjectProbe
from approval_support import Waiting, approval_yaml
from sqlalchemy import Engine

from rb_api.deps import ApiOptions
from rb_common.approval_links import signed_url
from rb_common.bus import DEFAULT_NAMES, Bus
from rb_engine.coordinator.applier import controlled
from rb_notifier.approval_mail import decision_link, with_link
from rb_notifier.config import NotifierConfig
from rb_notifier.rules import EmailDestination
from rb_notifier.summary import Approval, Summary

LINK_KEY = "approval-link-test-key-0123456789"
FORM = {"content-type": "application/x-www-form-urlencoded"}
ALICE = "alice@example.com"


@pytest.fixture
async def link_client(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app_settings(tmp_path, link_key=LINK_KEY), engine, bus, api_options) as c:
        yield c


@pytest.fixture
def waiting(engine: Engine) -> Waiting:
    return Waiting(
        engine, approval_yaml("t-mail-gate", f"['{ALICE}', bob]", require_comment=False), "key:carol"
    )


def link(approval_id: str, to: str = ALICE, ttl: float = 600, now: float | None = None) -> str:
    url = urlsplit(signed_url("http://rb.test", approval_id, to, [LINK_KEY.encode()], ttl, now))
    return f"{url.path}?{url.query}"


async def sent(probe: SubjectProbe, waiting: Waiting) -> int:
    return await probe.count(DEFAULT_NAMES.inbox_stream, DEFAULT_NAMES.control_subject(waiting.execution_id))


async def test_the_link_shows_a_page_then_decides_once(
    link_client: httpx.AsyncClient, waiting: Waiting, probe: SubjectProbe
) -> None:
    url = link(waiting.approval_id)
    page = await link_client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    assert "Go?" in page.text and "value='approve'" in page.text and ALICE in page.text
    assert await sent(probe, waiting) == 0, "a GET (a mail scanner) decides nothing"

    decided = await link_client.post(url, content=b"decision=approve&comment=fine+by+me", headers=FORM)
    assert decided.status_code == 200 and "Approved as email:alice@example.com" in decided.text, decided.text
    [command], _ = await probe.commands(waiting.execution_id)
    assert command["actor"] == "email:alice@example.com"
    assert command["data"]["via"] == "email" and command["data"]["comment"] == "fine by me"
    again = await link_client.post(url, content=b"decision=reject", headers=FORM)
    assert await sent(probe, waiting) == 1, again.text  # the same person's decision: one message

    waiting.record(controlled(waiting.state, command["type"], command["data"], command["actor"]))
    assert waiting.state.steps["gate"].status == "SUCCEEDED"
    used = await link_client.post(url, content=b"decision=approve", headers=FORM)
    assert used.status_code == 409 and used.headers["content-type"].startswith("application/problem+json")


async def test_bad_links_are_refused(
    link_client: httpx.AsyncClient, waiting: Waiting, probe: SubjectProbe
) -> None:
    url = link(waiting.approval_id)
    tampered = url.replace("alice%40example.com", "mallory%40example.com")
    assert (await link_client.get(tampered)).status_code == 403
    assert (await link_client.post(tampered, content=b"decision=approve", headers=FORM)).status_code == 403
    expired = link(waiting.approval_id, ttl=60, now=time.time() - 120)
    r = await link_client.post(expired, content=b"decision=approve", headers=FORM)
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    unlisted = link(waiting.approval_id, to="dave@example.com")
    r = await link_client.post(unlisted, content=b"decision=approve", headers=FORM)
    assert r.status_code == 403 and "not one of the approvers" in r.json()["detail"]
    r = await link_client.post(url, content=b"decision=maybe", headers=FORM)
    assert r.status_code == 422
    r = await link_client.post(url, json={"decision": "approve"})
    assert r.status_code == 415
    assert await sent(probe, waiting) == 0


def test_the_notifier_links_only_a_mail_to_one_listed_approver() -> None:
    config = NotifierConfig(public_url="https://rb.example.com", link_key=b"k" * 32)
    summary = Summary(
        execution_id="x1",
        event_id="e1",
        event_type="approval.requested",
        event_time=datetime(2025, 1, 1, tzinfo=UTC),
        runbook_id="r",
        runbook_name="R",
        runbook_version="1.0.0",
        environment="production",
        triggered_by="key:carol",
        status="WAITING_APPROVAL",
        trigger="approval_requested",
        headline="R is waiting for approval",
        approval=Approval(step_id="gate", approvers=["Alice@Example.com", "bob"], approval_id="x1:gate"),
    )
    url = decision_link(summary, EmailDestination((ALICE,)), config)
    assert url is not None and url.startswith(
        "https://rb.example.com/api/v1/approvals/x1:gate/email?to=alice"
    )
    assert decision_link(summary, EmailDestination((ALICE, "bob@example.com")), config) is None
    assert decision_link(summary, EmailDestination((ALICE,), cc=("c@example.com",)), config) is None
    assert decision_link(summary, EmailDestination(("dave@example.com",)), config) is None
    text, html = with_link("body", "<html><body><p>x</p></body></html>", url)
    assert url in text and html.endswith("</p></body></html>") and "&amp;expires=" in html
