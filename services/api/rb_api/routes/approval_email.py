"""/api/v1/approvals/{id}/email: an approval decided from an email, through the signed link the
notifier sends (rb_common.approval_links; no API key). GET shows what is asked and a form, and
changes nothing (mail scanners follow links); POST decides as `email:<address>`, once."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from rb_api import approvals
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, problem_responses
from rb_common.approval_links import verify
from rb_common.identity import Identity
from rb_common.links import link_keys
from rb_store.approval_queries import get_approval

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

ApprovalId = Annotated[str, Path(max_length=200, description="the approval's id")]
To = Annotated[
    str, Query(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$", description="the recipient")
]
Expires = Annotated[int, Query(ge=0, le=2**42)]
Sig = Annotated[str, Query(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]
_PAGE = {200: {"content": {"text/html": {}}}, **problem_responses(400, 403, 404, 409, 415, 422)}
_HEADERS = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}


def _checked(svc: ServicesDep, approval_id: str, to: str, expires: int, sig: str) -> None:
    keys = link_keys(svc.settings)
    if not keys:
        raise ProblemError(404, "approval links are off (set RB_LINK_KEY or RB_MASTER_KEY)", slug="not-found")
    refused = verify(approval_id, to, expires, sig, keys)
    if refused is not None:
        raise ProblemError(403, refused, slug="bad-link", title="Link refused")


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:40rem}}textarea{{width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"""


def confirmation(approval: dict[str, Any], to: str) -> str:
    needed = "required" if approval["require_comment"] else "optional"
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("Runbook", approval["runbook_id"]),
            ("Step", approval["step_id"]),
            ("Execution", approval["execution_id"]),
            ("Requested by", approval["requested_by"] or "-"),
            ("Status", approval["status"]),
            ("You", to),
        )
    )
    return _page(
        "Approval requested",
        f"<p>{html.escape(approval['prompt'] or '')}</p><table>{facts}</table>"
        "<form method='post'>"
        f"<p><label>Comment ({needed})<br><textarea name='comment' rows='3' maxlength='2000'></textarea></label></p>"
        "<button name='decision' value='approve'>Approve</button> "
        "<button name='decision' value='reject'>Reject</button></form>"
        "<p><small>Nothing is decided until you press a button. The link works once.</small></p>",
    )


@router.get(
    "/{approval_id}/email",
    summary="The confirmation page of an email's signed approval link (changes nothing)",
    response_class=HTMLResponse,
    responses=_PAGE,
)
async def email_page(
    approval_id: ApprovalId, svc: ServicesDep, to: To, expires: Expires, sig: Sig
) -> HTMLResponse:
    _checked(svc, approval_id, to, expires, sig)
    approval = await in_thread(get_approval, svc.engine, approval_id)
    if approval is None:
        raise approvals.missing(approval_id)
    return HTMLResponse(confirmation(approval, to), headers=_HEADERS)


@router.post(
    "/{approval_id}/email",
    summary="Decide through an email's signed approval link (form: decision, comment), once",
    response_class=HTMLResponse,
    responses=_PAGE,
)
async def email_decide(
    approval_id: ApprovalId, request: Request, svc: ServicesDep, to: To, expires: Expires, sig: Sig
) -> HTMLResponse:
    _checked(svc, approval_id, to, expires, sig)
    try:
        form = parse_qs((await request.body()).decode("utf-8"))
    except UnicodeDecodeError:
        raise ProblemError(400, "the form is not UTF-8", slug="invalid-request") from None
    decision = (form.get("decision") or [""])[0]
    if decision not in approvals.DECISIONS:
        raise ProblemError(
            422, "decision is approve or reject", slug="invalid-request", title="Invalid request"
        )
    comment = (form.get("comment") or [""])[0][:2000]
    who = Identity(id=to.lower(), name=to.lower(), kind="email")
    result = await approvals.decide(svc, who, approval_id, decision, comment, via="email")
    verb = "Approved" if decision == "approve" else "Rejected"
    text = f"<p>{verb} as {html.escape(result['actor'])}. The run goes on from here.</p>"
    return HTMLResponse(_page(f"{verb}", text), headers=_HEADERS)
