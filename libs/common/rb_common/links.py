"""Signed, short-lived links to an execution's page (issue 13).

A click from Slack or a mail client carries no API key, so the link itself is the credential:
`/api/v1/executions/<id>/page?expires=<unix seconds>&sig=<hex HMAC-SHA256>` over
`execution-page:<id>:<expires>`. The key is RB_LINK_KEY, or one derived from each key of
RB_MASTER_KEY (the newest signs, all verify, so a master-key rotation keeps fresh links valid).
The link opens one read-only page of one execution and nothing else; it expires after
RB_LINK_TTL seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from rb_common.settings import Settings

PAGE_PATH = "/api/v1/executions/{execution_id}/page"


def link_keys(settings: Settings) -> list[bytes]:
    """The keys that verify links, the signing key first; empty: links are off."""
    if settings.link_key is not None and settings.link_key.get_secret_value():
        return [settings.link_key.get_secret_value().encode()]
    if settings.master_key is None:
        return []
    masters = [k.strip() for k in settings.master_key.get_secret_value().split(",") if k.strip()]
    # Domain-separated: a link key never equals (or reveals) the key that encrypts secrets.
    return [hmac.new(m.encode(), b"rb-execution-link-v1", hashlib.sha256).digest() for m in masters]


def _signature(key: bytes, execution_id: str, expires: int) -> str:
    return hmac.new(key, f"execution-page:{execution_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(execution_id: str, key: bytes, ttl: float, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    query = urlencode({"expires": expires, "sig": _signature(key, execution_id, expires)})
    return PAGE_PATH.format(execution_id=execution_id) + "?" + query


def signed_url(base_url: str, execution_id: str, key: bytes, ttl: float, now: float | None = None) -> str:
    return base_url.rstrip("/") + signed_path(execution_id, key, ttl, now)


def verify(
    execution_id: str, expires: int, sig: str, keys: list[bytes], now: float | None = None
) -> str | None:
    """None when the link is good; else why not (expired, bad signature)."""
    if expires < (time.time() if now is None else now):
        return "the link has expired"
    for key in keys:
        if hmac.compare_digest(_signature(key, execution_id, expires), sig):
            return None
    return "the link's signature does not match"
