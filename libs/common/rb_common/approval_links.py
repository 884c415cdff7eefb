"""Signed links that let one email recipient decide one approval (issue 14).

`/api/v1/approvals/<approval id>/email?to=<address>&expires=<unix seconds>&sig=<hex>`, the
HMAC-SHA256 over `approval-email:<approval id>:<address>:<expires>` with a key derived from the
link keys (rb_common.links.link_keys: RB_LINK_KEY, else RB_MASTER_KEY), domain-separated from
the execution pages' links. A GET shows a confirmation page and changes nothing (mail scanners
follow links); a POST decides as `email:<address>`, which must be listed in the step's
`approvers`. The link works once: that address's decision is then taken, and another is
refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

PATH = "/api/v1/approvals/{approval_id}/email"


def approval_keys(link_keys: list[bytes]) -> list[bytes]:
    return [hmac.new(k, b"rb-approval-link-v1", hashlib.sha256).digest() for k in link_keys]


def _signature(key: bytes, approval_id: str, to: str, expires: int) -> str:
    text = f"approval-email:{approval_id}:{to.lower()}:{expires}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def signed_url(
    base_url: str, approval_id: str, to: str, link_keys: list[bytes], ttl: float, now: float | None = None
) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    key = approval_keys(link_keys)[0]
    query = urlencode({"to": to, "expires": expires, "sig": _signature(key, approval_id, to, expires)})
    return base_url.rstrip("/") + PATH.format(approval_id=quote(approval_id, safe=":")) + "?" + query


def verify(
    approval_id: str, to: str, expires: int, sig: str, link_keys: list[bytes], now: float | None = None
) -> str | None:
    """None when the link is good; else why not."""
    if expires < (time.time() if now is None else now):
        return "the link has expired"
    for key in approval_keys(link_keys):
        if hmac.compare_digest(_signature(key, approval_id, to, expires), sig):
            return None
    return "the link's signature does not match"
