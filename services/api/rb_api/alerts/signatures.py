"""HMAC-SHA256 signatures of raw request bodies, and where their secrets come from.

- PagerDuty V3: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` (several while PagerDuty rotates
  the secret; any match is enough).
- rb's generic webhooks: `X-RB-Signature: sha256=<hex>[,sha256=<hex>...]`.

Comparison is constant-time. Without a configured secret nothing is accepted: an endpoint that
takes unsigned requests whenever someone forgets a setting would be an open door.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rb_api.problems import ProblemError

PAGERDUTY_HEADER = "X-PagerDuty-Signature"
RB_HEADER = "X-RB-Signature"

MAX_HEADER_LENGTH = 4096


@dataclass(frozen=True)
class Scheme:
    header: str  # the HTTP header that carries the signatures
    prefix: str  # what precedes the hex digest: "v1=" or "sha256="
    setting: str  # the Settings field holding the secret
    env: str  # the environment variable read when Settings has no such field


PAGERDUTY = Scheme(PAGERDUTY_HEADER, "v1=", "pagerduty_webhook_secret", "RB_PAGERDUTY_WEBHOOK_SECRET")
WEBHOOK = Scheme(RB_HEADER, "sha256=", "webhook_secret", "RB_WEBHOOK_SECRET")


class SignatureError(Exception):
    """The request is not signed with the configured secret (or no secret is configured)."""

    def __init__(self, message: str, slug: str = "invalid-signature") -> None:
        super().__init__(message)
        self.slug = slug


def digest(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(scheme: Scheme, secret: str, body: bytes) -> str:
    """The header value a sender puts on `body` (used by tests and clients)."""
    return scheme.prefix + digest(secret, body)


def secret_for(scheme: Scheme, settings: object, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret from Settings when it has the field (str or SecretStr), else the environment."""
    if hasattr(settings, scheme.setting):
        value = getattr(settings, scheme.setting)
        if value is not None and hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
    else:
        value = (os.environ if environ is None else environ).get(scheme.env)
    return value if isinstance(value, str) and value else None


def verify(scheme: Scheme, secret: str | None, body: bytes, header: str | None) -> None:
    """Raise SignatureError unless one of the header's signatures is the body's HMAC."""
    if secret is None:
        raise SignatureError(
            f"no secret is configured for {scheme.header} (set {scheme.env}); signed requests only",
            slug="signature-not-configured",
        )
    if header is None or not header.strip():
        raise SignatureError(f"the {scheme.header} header is missing", slug="signature-required")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError(f"the {scheme.header} header is too long")
    expected = digest(secret, body).encode()
    found = False
    for part in header.split(","):
        part = part.strip()
        if not part.startswith(scheme.prefix):
            continue  # another scheme version: not ours to check
        found = True
        given = part[len(scheme.prefix) :].strip().lower().encode("ascii", "replace")
        if hmac.compare_digest(given, expected):
            return
    if not found:
        raise SignatureError(f"the {scheme.header} header holds no {scheme.prefix}<hex> signature")
    raise SignatureError(f"the {scheme.header} signature does not match the request body")


def require(scheme: Scheme, settings: object, body: bytes, headers: Mapping[str, str]) -> None:
    """verify(), answered as a 401 problem."""
    try:
        verify(scheme, secret_for(scheme, settings), body, headers.get(scheme.header.lower()))
    except SignatureError as exc:
        raise ProblemError(401, str(exc), slug=exc.slug, title="Unauthorized") from None
