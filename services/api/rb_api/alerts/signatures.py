"""How trigger senders authenticate: HMAC signatures with a timestamp and a replay window where
the sender signs, a bearer token or basic auth where it cannot.

- rb's generic webhooks: `X-RB-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, the hex
  HMAC-SHA256 of `"<t>.<raw body>"` with RB_WEBHOOK_SECRET (several v1 while the secret is
  rotated; any match is enough). `t` must be within RB_TRIGGER_REPLAY_WINDOW (300 s) of now, and
  a signature is accepted once: the same one again is a replay (401). The event id is the body's
  `event_id` (so it is signed).
- PagerDuty V3: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, the HMAC of the raw body with
  RB_PAGERDUTY_WEBHOOK_SECRET. PagerDuty signs no timestamp, but the body (signed) carries
  `event.occurred_at`: it must be within the window, and an event id is accepted once in it.
- Alertmanager and Grafana: `Authorization: Bearer <RB_ALERTMANAGER_TOKEN / RB_GRAFANA_TOKEN>`
  or basic auth matching RB_ALERTMANAGER_BASIC_AUTH / RB_GRAFANA_BASIC_AUTH (`user:password`).
- CloudEvents: `Authorization: Bearer <RB_CLOUDEVENTS_TOKEN>`.

Comparisons are constant-time. A source with nothing configured refuses everything (401 naming
the setting): an endpoint that takes unauthenticated requests whenever someone forgets a setting
would be an open door. Refusals are 401 problems with `WWW-Authenticate`.

The replay memory is per API process (`ReplayGuard` on the app's services); with several API
replicas a replay sent to another one passes this check, and the alert's dedupe id (its
JetStream message id) still keeps it from starting a second execution.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from rb_api.problems import ProblemError

PAGERDUTY_HEADER = "X-PagerDuty-Signature"
RB_HEADER = "X-RB-Signature"

MAX_HEADER_LENGTH = 4096
DEFAULT_REPLAY_WINDOW = 300.0
REALM = "rb-triggers"


@dataclass(frozen=True)
class Scheme:
    header: str  # the HTTP header that carries the signatures
    prefix: str  # what precedes the hex digest
    setting: str  # the Settings field holding the secret
    env: str  # the environment variable read when Settings has no such field
    timestamped: bool = False  # `t=<unix>` is signed with the body


PAGERDUTY = Scheme(PAGERDUTY_HEADER, "v1=", "pagerduty_webhook_secret", "RB_PAGERDUTY_WEBHOOK_SECRET")
WEBHOOK = Scheme(RB_HEADER, "v1=", "webhook_secret", "RB_WEBHOOK_SECRET", timestamped=True)


@dataclass(frozen=True)
class TokenSource:
    """A sender that cannot sign: a bearer token, or basic auth when it supports it."""

    name: str
    token_setting: str  # Settings field / RB_<NAME>_TOKEN
    basic_setting: str | None  # Settings field / RB_<NAME>_BASIC_AUTH, "user:password"

    @property
    def token_env(self) -> str:
        return "RB_" + self.token_setting.upper()

    @property
    def basic_env(self) -> str | None:
        return None if self.basic_setting is None else "RB_" + self.basic_setting.upper()


ALERTMANAGER = TokenSource("alertmanager", "alertmanager_token", "alertmanager_basic_auth")
GRAFANA = TokenSource("grafana", "grafana_token", "grafana_basic_auth")
CLOUDEVENTS = TokenSource("cloudevents", "cloudevents_token", None)


class SignatureError(Exception):
    """The request is not authenticated (no or a wrong signature, an old or replayed one, no
    secret configured)."""

    def __init__(self, message: str, slug: str = "invalid-signature") -> None:
        super().__init__(message)
        self.slug = slug


# -- signatures ---------------------------------------------------------------------------------


def digest(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


def signed_content(t: int, body: bytes) -> bytes:
    """What a timestamped signature covers: `"<t>.<body>"`."""
    return str(t).encode() + b"." + body


def sign(scheme: Scheme, secret: str, body: bytes, *, t: int | None = None) -> str:
    """The header value a sender puts on `body` (used by tests and clients); a timestamped
    scheme signs `t` (default: now) with it."""
    if scheme.timestamped:
        t = int(time.time()) if t is None else t
        return f"t={t},{scheme.prefix}{digest(secret, signed_content(t, body))}"
    return scheme.prefix + digest(secret, body)


def _setting(settings: object, field: str, env: str, environ: Mapping[str, str] | None) -> str | None:
    if hasattr(settings, field):
        value = getattr(settings, field)
        if value is not None and hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
    else:
        value = (os.environ if environ is None else environ).get(env)
    return value if isinstance(value, str) and value else None


def secret_for(scheme: Scheme, settings: object, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret from Settings when it has the field (str or SecretStr), else the environment."""
    return _setting(settings, scheme.setting, scheme.env, environ)


def replay_window(settings: object) -> float:
    value = getattr(settings, "trigger_replay_window", None)
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_REPLAY_WINDOW


@dataclass(frozen=True)
class Verified:
    """A valid signature: `replay_key` names it for the replay memory."""

    replay_key: str
    t: int | None = None


def verify(
    scheme: Scheme,
    secret: str | None,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    window: float = DEFAULT_REPLAY_WINDOW,
) -> Verified:
    """Raise SignatureError unless one of the header's signatures is the HMAC of the body (and,
    for a timestamped scheme, of its `t`, which must be within `window` of `now`)."""
    if secret is None:
        raise SignatureError(
            f"no secret is configured for {scheme.header}: set {scheme.env} (nothing is accepted "
            "until it is set)",
            slug="signature-not-configured",
        )
    if header is None or not header.strip():
        raise SignatureError(f"the {scheme.header} header is missing", slug="signature-required")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError(f"the {scheme.header} header is too long")
    parts = [part.strip() for part in header.split(",")]
    content = body
    t: int | None = None
    if scheme.timestamped:
        stamps = [p[2:].strip() for p in parts if p.startswith("t=")]
        if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12:
            raise SignatureError(
                f'the {scheme.header} header needs one t=<unix seconds> (signed as "<t>.<body>")',
                slug="signature-required",
            )
        t = int(stamps[0])
        current = time.time() if now is None else now
        if abs(current - t) > window:
            raise SignatureError(
                f"the {scheme.header} timestamp t={t} is {abs(current - t):.0f} s from now, outside the "
                f"replay window of {window:.0f} s",
                slug="signature-expired",
            )
        content = signed_content(t, body)
    expected = digest(secret, content).encode()
    found = False
    for part in parts:
        if not part.startswith(scheme.prefix):
            continue  # another scheme version (or the timestamp): not a signature to check
        found = True
        given = part[len(scheme.prefix) :].strip().lower().encode("ascii", "replace")
        if hmac.compare_digest(given, expected):
            return Verified(f"{scheme.header}:{t}:{expected.decode()}", t)
    if not found:
        raise SignatureError(f"the {scheme.header} header holds no {scheme.prefix}<hex> signature")
    raise SignatureError(f"the {scheme.header} signature does not match the request body")


# -- replays ------------------------------------------------------------------------------------


class ReplayGuard:
    """What was accepted within the replay window: signatures, event ids. Bounded."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> monotonic expiry
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def _prune(self, now: float) -> None:
        while self._seen:
            _, expiry = next(iter(self._seen.items()))
            if expiry > now and len(self._seen) <= self.max_entries:
                break
            self._seen.popitem(last=False)

    def seen(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            expiry = self._seen.get(key)
            return expiry is not None and expiry > now

    def remember(self, key: str, for_seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._seen.pop(key, None)
            self._seen[key] = now + for_seconds
            self._prune(now)


_GUARDS: dict[int, ReplayGuard] = {}


def guard_of(owner: object) -> ReplayGuard:
    """The replay memory of one app (its services object)."""
    found = getattr(owner, "_rb_replay_guard", None)
    if isinstance(found, ReplayGuard):
        return found
    guard = ReplayGuard()
    try:
        object.__setattr__(owner, "_rb_replay_guard", guard)
    except (AttributeError, TypeError):
        guard = _GUARDS.setdefault(id(owner), guard)
    return guard


# -- problems -----------------------------------------------------------------------------------


def unauthorized(detail: str, slug: str, challenge: str) -> ProblemError:
    return ProblemError(401, detail, slug=slug, title="Unauthorized", headers={"WWW-Authenticate": challenge})


def _signature_challenge(scheme: Scheme) -> str:
    return f'Signature realm="{REALM}", headers="{scheme.header}"'


def require(scheme: Scheme, settings: object, body: bytes, headers: Mapping[str, str]) -> Verified:
    """verify(), answered as a 401 problem."""
    try:
        return verify(
            scheme,
            secret_for(scheme, settings),
            body,
            headers.get(scheme.header.lower()),
            window=replay_window(settings),
        )
    except SignatureError as exc:
        raise unauthorized(str(exc), exc.slug, _signature_challenge(scheme)) from None


def refuse_replay(scheme: Scheme, guard: ReplayGuard, key: str, what: str) -> None:
    if guard.seen(key):
        raise unauthorized(
            f"{what} was already accepted within the replay window: a replay is refused (sign a "
            "new request to resend)",
            "signature-replayed",
            _signature_challenge(scheme),
        )


def check_occurred_at(
    scheme: Scheme, occurred_at: str | None, window: float, now: float | None = None
) -> None:
    """PagerDuty: the signed body's `event.occurred_at` must be within the replay window."""
    challenge = _signature_challenge(scheme)
    if not occurred_at:
        raise unauthorized(
            "the PagerDuty event has no occurred_at: its age cannot be checked",
            "signature-expired",
            challenge,
        )
    try:
        when = datetime.fromisoformat(occurred_at.strip().replace("Z", "+00:00"))
    except ValueError:
        raise unauthorized(
            "the PagerDuty event's occurred_at is not a timestamp", "signature-expired", challenge
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = (time.time() if now is None else now) - when.timestamp()
    if abs(age) > window:
        raise unauthorized(
            f"the PagerDuty event occurred {abs(age):.0f} s from now, outside the replay window of "
            f"{window:.0f} s",
            "signature-expired",
            challenge,
        )


# -- tokens -------------------------------------------------------------------------------------


def _challenge(source: TokenSource) -> str:
    challenge = f'Bearer realm="{REALM}"'
    if source.basic_setting is not None:
        challenge += f', Basic realm="{REALM}"'
    return challenge


def require_token(source: TokenSource, settings: object, headers: Mapping[str, str]) -> None:
    """A bearer token (or basic auth, where the source has it) matching the configured one;
    401 otherwise. Constant-time comparisons."""
    token = _setting(settings, source.token_setting, source.token_env, None)
    basic = (
        _setting(settings, source.basic_setting, source.basic_env or "", None)
        if source.basic_setting is not None
        else None
    )
    challenge = _challenge(source)
    if token is None and basic is None:
        settings_named = source.token_env + (f" or {source.basic_env}" if source.basic_env else "")
        raise unauthorized(
            f"no credentials are configured for {source.name} triggers: set {settings_named} "
            "(nothing is accepted until one is set)",
            "trigger-auth-not-configured",
            challenge,
        )
    header = headers.get("authorization")
    if header is None or not header.strip():
        raise unauthorized(
            f"{source.name} triggers need Authorization: Bearer <{source.token_env}>"
            + (f" or basic auth ({source.basic_env})" if source.basic_env else ""),
            "unauthenticated",
            challenge,
        )
    if len(header) > MAX_HEADER_LENGTH:
        raise unauthorized("the Authorization header is too long", "unauthenticated", challenge)
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    given = credential.encode("utf-8", "replace")
    ok = False
    if scheme.lower() == "bearer" and token is not None:
        ok = hmac.compare_digest(given, token.encode())
    elif scheme.lower() == "basic" and basic is not None:
        try:
            decoded = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        ok = hmac.compare_digest(decoded, basic.encode())
    if not ok:
        raise unauthorized(
            f"the credentials of this {source.name} trigger are not the configured ones",
            "invalid-credentials",
            challenge,
        )
